using System.Text.Json;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Storage;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>
/// Model zips that refer to a model's files instead of copying them: the path and the SHA-256 of the files. A Stable
/// Diffusion model (a folder or single file people download) is always saved so; any model with LoRA adapters fused
/// into it is saved as a reference to its base (a Stable Diffusion model's files, a pixel-space model's checkpoint file
/// or diffusers folder) plus the adapters (<see cref="ZipAdapters"/>), never as a copy of the base. Loading such a zip
/// finds the files again, refuses them, naming the path, when they are missing or have changed since the zip was
/// saved, and fuses the adapters into the base again.
/// </summary>
internal static class ReferencedModel
{
    public const string SourceStream = "DiffusionModelSource.json";

    /// <summary>
    /// Writes the reference to the model's files and its fused LoRA adapters. A model with adapters whose base is in no
    /// file, or whose file has changed since the model was read from or written to it, is refused: the zip could not
    /// give the model back.
    /// </summary>
    public static void Save(ModelSaveContext ctx, DiffusionModel model, IReadOnlyList<FusedLora> fused)
    {
        var source = model.Source ?? throw NoBase(model, fused);
        string actual = Checksum(source);
        if (source.Sha256 is { } known && !string.Equals(actual, known, StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException(
                $"The model's base file '{source.Path}' has changed since the model was read from or written to it (SHA-256 now {actual[..12]}…, then {known[..Math.Min(12, known.Length)]}…): " +
                $"it no longer holds the base weights the LoRA adapters ({ZipAdapters.Names(fused.Select(f => f.Path))}) are fused on, and a model zip refers to the base instead of copying it. " +
                "Unfuse the adapters, write the model again with model.Save(path) or model.SaveDiffusers(folder), fuse them again, then save the zip.");
        var adapters = fused.Count > 0 ? ZipAdapters.Serialize(fused) : null;
        var saved = source with { Sha256 = actual };
        ctx.SaveBinaryStream(SourceStream, w => w.Write(JsonSerializer.SerializeToUtf8Bytes(saved, DiffusionCheckpoint.JsonOptions)));
        if (adapters is not null) ZipAdapters.Write(ctx, adapters);
    }

    // A model zip holds LoRA adapters and a reference to their base, so the base must be in a file of its own.
    private static InvalidOperationException NoBase(DiffusionModel model, IReadOnlyList<FusedLora> fused)
    {
        string names = ZipAdapters.Names(fused.Select(f => f.Path));
        const string rule = "a model zip holds LoRA adapters and refers to their base model's files by path and SHA-256, never a copy of the base";
        if (model.TakesPrompts || model.IsLatent)
            return new InvalidOperationException(model.FineTunedFrom is { } origin
                ? $"This Stable Diffusion model has LoRA adapters fused into it ({names}), and its UNet was fine-tuned in place from '{origin.Path}', whose files no longer hold its weights; {rule}. " +
                  "Save the base first: unfuse the adapters, write the model with model.SaveDiffusers(folder), fuse them again, then save the zip."
                : $"This Stable Diffusion model has LoRA adapters fused into it ({names}) but does not know the files it was loaded from; {rule}. Load it with StableDiffusionFormat.Load.");
        return new InvalidOperationException(
            $"This model has LoRA adapters fused into it ({names}), and {rule}; but no file holds this model's base weights (it was trained in memory, or loaded from a model zip or a stream). " +
            "Save the base first: write the model with model.Save(\"base.mldiff\") or model.SaveDiffusers(folder) before fusing or training the LoRA (or load it from such a file), then save the zip. " +
            "With a LoRA already fused: save the LoRA (FusedLora.Save), unfuse it, save the model, fuse the LoRA again with LoadLora, then save the zip.");
    }

    /// <summary>
    /// The referenced model, its LoRA adapters fused again, when the stage holds a reference; null when it holds a
    /// checkpoint of its own. <paramref name="component"/> names the stage in messages.
    /// </summary>
    public static DiffusionModel? TryLoad(ModelLoadContext ctx, Device device, string component)
    {
        ModelSource? source = null;
        bool found = ctx.TryLoadBinaryStream(SourceStream, r =>
        {
            using var buffer = new MemoryStream();
            r.BaseStream.CopyTo(buffer);
            try
            {
                source = JsonSerializer.Deserialize<ModelSource>(buffer.ToArray(), DiffusionCheckpoint.JsonOptions);
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException($"The model zip's {component} has a corrupt model reference: {e.Message}", e);
            }
        });
        if (!found) return null;
        if (source is null) throw new CheckpointFormatException($"The model zip's {component} has an empty model reference.");
        var adapters = ZipAdapters.Read(ctx, component);
        string held = adapters is null ? "" : $" (it holds only the LoRA adapters fused into it: {ZipAdapters.Names(adapters.Select(a => a.Entry.Path))})";
        if (!Directory.Exists(source.Path) && !File.Exists(source.Path))
            throw new CheckpointFormatException($"The model zip's {component} refers to {Noun(source)} '{source.Path}', which does not exist here; the zip holds a reference to it, not a copy{held}. Put the model at that path.");
        string actual = Checksum(source);
        string saved = source.Sha256?[..Math.Min(12, source.Sha256.Length)] ?? "none";
        if (!string.Equals(actual, source.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new CheckpointFormatException(adapters is null
                ? $"The model zip's {component} refers to '{source.Path}', whose files have changed since the zip was saved (SHA-256 {actual[..12]}…, saved {saved}…)."
                : $"The model zip's {component} refers to '{source.Path}' as the base of its LoRA adapters ({ZipAdapters.Names(adapters.Select(a => a.Entry.Path))}), but its files have changed since the zip was saved (SHA-256 {actual[..12]}…, saved {saved}…): " +
                  "the adapters were trained or fused on another base model, and fused into this one they would not give the saved model. Put the base the zip was saved with at that path.");
        var model = Load(source, device);
        if (adapters is null) return model;
        try
        {
            ZipAdapters.Fuse(model, adapters, component);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>The same model loaded again onto <paramref name="device"/>.</summary>
    public static DiffusionModel Load(ModelSource source, Device device) => source.Kind switch
    {
        ModelSource.DiffusersFolder => StableDiffusionFormat.Load(source.Path, device),
        ModelSource.SingleFile => StableDiffusionFormat.Load(source.Path, device, source.TokenizerFolder),
        ModelSource.Checkpoint => DiffusionModel.Load(source.Path, device),
        ModelSource.DiffusersModel => DiffusersFormat.Load(source.Path, device),
        _ => throw Unknown(source),
    };

    /// <summary>
    /// SHA-256 over the model's files (<see cref="FileChecksum"/>): a Stable Diffusion folder's weight files, a pixel-space
    /// diffusers folder's, or the one file.
    /// </summary>
    public static string Checksum(ModelSource source) => source.Kind switch
    {
        ModelSource.DiffusersFolder => FileChecksum.Sha256(source.Path, StableDiffusionPipelineFolder.WeightFiles(source.Path)),
        ModelSource.DiffusersModel => FileChecksum.Sha256(source.Path, DiffusersModelFolder.WeightFiles(source.Path)),
        ModelSource.SingleFile or ModelSource.Checkpoint => FileChecksum.Sha256(source.Path),
        _ => throw Unknown(source),
    };

    private static string Noun(ModelSource source) => source.Kind switch
    {
        ModelSource.Checkpoint => "the checkpoint file",
        ModelSource.DiffusersModel => "the diffusers model folder",
        _ => "the Stable Diffusion model",
    };

    private static CheckpointFormatException Unknown(ModelSource source) =>
        new($"A model reference of kind '{source.Kind}' is not known to this version of the library.");
}
