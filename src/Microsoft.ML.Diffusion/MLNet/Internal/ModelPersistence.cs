using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>
/// Writing and reading the diffusion stages' state inside ML.NET model zips: the model as its
/// checkpoint bytes (which carry their own format version and SHA-256), plus a JSON settings stream.
/// Version checks happen here, before ML.NET's own, so a model from a newer library gets a message
/// that says so instead of ML.NET's generic one.
/// </summary>
internal static class ModelPersistence
{
    public const string ModelStream = "DiffusionModel.mldiff";
    public const string SettingsStream = "Settings.json";

    /// <summary>The first format of the diffusion stages.</summary>
    public const uint FirstVersion = 0x00010001;

    /// <summary>
    /// Stage settings from this version on generate as diffusers does: DDIM keeps the model's ε̂ after clipping x̂₀.
    /// Earlier stages recomputed it from the clipped x̂₀, and keep doing so when loaded.
    /// </summary>
    public const uint KeepsModelNoiseAfterClipping = 0x00010002;

    /// <summary>
    /// Sampling stages from this version on save their sampler settings nested (<c>Generation</c> / <c>Inpainting</c>) and
    /// each verb under its own signature; earlier zips hold every sampling stage under the generation signature with
    /// flat settings and a <c>Stage</c> discriminator (<see cref="LegacyStageSettings"/>).
    /// </summary>
    public const uint NestedSamplingSettings = 0x00010003;

    /// <summary>
    /// Stages from this version on may hold LoRA adapters beside a reference to their base model (<see cref="ZipAdapters"/>);
    /// a stage that does is readable from this version on only, so an older library refuses it instead of loading the
    /// base without its adapters.
    /// </summary>
    public const uint HoldsLoraAdapters = 0x00010004;

    public static VersionInfo Version(string modelSignature, string loaderSignature, Type loader, uint written, uint readable, uint readBackFrom) => new(
        modelSignature: modelSignature,
        verWrittenCur: written,
        verReadableCur: readable,
        verWeCanReadBack: readBackFrom,
        loaderSignature: loaderSignature,
        loaderAssemblyName: loader.Assembly.FullName);

    /// <summary>The version a stage saving <paramref name="model"/> writes: readable from <see cref="HoldsLoraAdapters"/> on when LoRA adapters are fused into it.</summary>
    public static VersionInfo VersionFor(VersionInfo stage, DiffusionModel model) => LoraFusion.Of(model).Fused.Count == 0 ? stage : new(
        // ML.NET keeps the signature as its eight characters' bytes, spaces as zeros.
        modelSignature: new string([.. Enumerable.Range(0, 8).Select(i => (char)((stage.ModelSignature >> (8 * i)) & 0xFF)).Select(c => c == '\0' ? ' ' : c)]),
        verWrittenCur: stage.VerWrittenCur,
        verReadableCur: Math.Max(stage.VerReadableCur, HoldsLoraAdapters),
        verWeCanReadBack: stage.VerWeCanReadBack,
        loaderSignature: stage.LoaderSignature,
        loaderAssemblyName: stage.LoaderAssemblyName,
        loaderSignatureAlt: stage.LoaderSignatureAlt);

    /// <summary>Checks the stored component's version and signature with a clear message, then lets ML.NET check the rest.</summary>
    public static void CheckVersion(ModelLoadContext ctx, VersionInfo expected, string component)
    {
        var header = ctx.Header;
        if (header.ModelVerReadable > expected.VerWrittenCur)
            throw new FormatException(
                $"The model zip's {component} was written in format version 0x{header.ModelVerWritten:X8} by a newer Microsoft.ML.Diffusion and needs a reader of at least 0x{header.ModelVerReadable:X8}; this library reads up to 0x{expected.VerWrittenCur:X8}. Upgrade Microsoft.ML.Diffusion to load it.");
        ctx.CheckAtModel(expected);
    }

    /// <summary>
    /// The model as a reference to its files (a Stable Diffusion model; any model with LoRA adapters fused, with the
    /// adapters: <see cref="ReferencedModel"/>) or as its checkpoint.
    /// </summary>
    public static void SaveModel(ModelSaveContext ctx, DiffusionModel model)
    {
        var fused = LoraFusion.Of(model).Fused;
        if (fused.Count > 0 || (model.Source is not null && (model.IsLatent || model.TakesPrompts))) ReferencedModel.Save(ctx, model, fused);
        else ctx.SaveBinaryStream(ModelStream, w => model.Save(w.BaseStream));
    }

    /// <summary>Frees a model a stage owns, with the LoRA adapters fused into it.</summary>
    public static void DisposeModel(DiffusionModel model)
    {
        foreach (var lora in LoraFusion.Of(model).Fused) lora.Dispose();
        model.Dispose();
    }

    /// <summary>The stage's model, on the device the loading context asks for (<see cref="EnvironmentDevice.For"/>).</summary>
    public static DiffusionModel LoadModel(ModelLoadContext ctx, IHostEnvironment env, string component)
    {
        if (ReferencedModel.TryLoad(ctx, EnvironmentDevice.For(env), component) is { } referenced) return referenced;
        DiffusionModel? model = null;
        bool found = ctx.TryLoadBinaryStream(ModelStream, r =>
        {
            using var buffer = new MemoryStream();
            r.BaseStream.CopyTo(buffer);
            buffer.Position = 0;
            model = DiffusionModel.Load(buffer, EnvironmentDevice.For(env), $"The model zip's {component}");
        });
        if (!found || model is null)
            throw new CheckpointFormatException($"The model zip's {component} has no '{ModelStream}' stream; the zip is incomplete or was not written by Microsoft.ML.Diffusion.");
        return model;
    }

    public static void SaveSettings(ModelSaveContext ctx, object settings)
        => ctx.SaveBinaryStream(SettingsStream, w => w.Write(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(settings, settings.GetType(), DiffusionCheckpoint.JsonOptions)));

    public static T LoadSettings<T>(ModelLoadContext ctx, string component) => Deserialize<T>(LoadSettingsJson(ctx, component), component);

    /// <summary>
    /// A sampling stage's settings: as saved, or for a zip written before <see cref="NestedSamplingSettings"/> read from its
    /// flat settings into the stage it was built as (which may be image-to-image or inpainting).
    /// </summary>
    public static DiffusionStageOptions LoadStageSettings<T>(ModelLoadContext ctx, string component) where T : DiffusionStageOptions
    {
        var json = LoadSettingsJson(ctx, component);
        uint written = ctx.Header.ModelVerWritten;
        if (written >= NestedSamplingSettings) return Deserialize<T>(json, component);
        try
        {
            return LegacyStageSettings.Read(json, keepsModelNoiseAfterClipping: written >= KeepsModelNoiseAfterClipping);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw new CheckpointFormatException($"The model zip's {component} has corrupt settings: {e.Message}", e);
        }
    }

    private static byte[] LoadSettingsJson(ModelLoadContext ctx, string component)
    {
        byte[]? json = null;
        bool found = ctx.TryLoadBinaryStream(SettingsStream, r =>
        {
            using var buffer = new MemoryStream();
            r.BaseStream.CopyTo(buffer);
            json = buffer.ToArray();
        });
        if (!found || json is null)
            throw new CheckpointFormatException($"The model zip's {component} has no '{SettingsStream}' stream; the zip is incomplete or was not written by Microsoft.ML.Diffusion.");
        return json;
    }

    private static T Deserialize<T>(byte[] json, string component)
    {
        T? settings;
        try
        {
            settings = System.Text.Json.JsonSerializer.Deserialize<T>(json, DiffusionCheckpoint.JsonOptions);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CheckpointFormatException($"The model zip's {component} has corrupt settings: {e.Message}", e);
        }
        return settings ?? throw new CheckpointFormatException($"The model zip's {component} has empty settings.");
    }
}
