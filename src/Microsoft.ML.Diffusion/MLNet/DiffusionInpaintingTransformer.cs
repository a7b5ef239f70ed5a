using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Runtime;
using TorchSharp;

[assembly: LoadableClass(typeof(DiffusionInpaintingTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Inpainting", DiffusionInpaintingTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>Redraws each input row's image where its mask is 1 (RePaint) and keeps it exactly where the mask is 0.</summary>
public sealed class DiffusionInpaintingTransformer : DiffusionSamplingTransformer
{
    internal const string LoaderSignature = "DiffusionInpaintXf";
    private const string ModelSignature = "DIFFINPR";

    internal DiffusionInpaintingTransformer(IHostEnvironment env, DiffusionModel model, DiffusionInpaintingOptions options, bool ownsModel)
        : base(env, nameof(DiffusionInpaintingTransformer), model, options, ownsModel)
    {
    }

    /// <summary>The inpainting settings (a copy; changing it does not affect this transformer).</summary>
    public DiffusionInpaintingOptions Options => (DiffusionInpaintingOptions)Settings.Snapshot();

    private DiffusionInpaintingOptions Settings => (DiffusionInpaintingOptions)StageSettings;

    // A latent model inpaints images of the options' size (its own when unset); a pixel model images of its size.
    internal override long[] OutputShape => SamplingStageShape.EditingShape(Model, Settings.Height, Settings.Width);

    internal override (ImageColumn? Image, MaskColumn? Mask) BindImageColumns(DataViewSchema inputSchema, int channels, int height, int width)
        => (ImageColumn.Resolve(inputSchema, Settings.ImageColumnName, channels, height, width, Settings.PixelRange),
            MaskColumn.Resolve(inputSchema, Settings.MaskColumnName, channels, height, width));

    // Rows whose mask is all zeros come back as they are; the others are inpainted together.
    internal override float[][] SampleBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn)
    {
        var result = rows.Select(r => r.Image!).ToArray();
        var redrawn = Enumerable.Range(0, rows.Count).Where(i => rows[i].Mask!.Any(v => v > 0)).ToArray();
        if (redrawn.Length == 0) return result;
        var shape = OutputShape;
        int maskChannels = rows[0].Mask!.Length / (int)(shape[1] * shape[2]);
        var seeds = redrawn.Select(i => rows[i].Seed).ToArray();
        using var images = StackImages(redrawn.Select(i => rows[i].Image!));
        using var masks = torch.tensor(redrawn.SelectMany(i => rows[i].Mask!).ToArray(), [redrawn.Length, maskChannels, shape[1], shape[2]]);
        using var condition = Model.TakesPrompts ? null : conditionColumn?.ToBatch(redrawn.Select(i => rows[i].Condition!).ToList());
        using var channel = Model.TakesPrompts ? Host.Start("Inpainting") : null;
        using var inpainted = Model.TakesPrompts
            ? Model.InpaintWithPrompts(Settings.Inpainting, images, masks, redrawn.Select(i => rows[i].Condition as string ?? "").ToArray(), seeds,
                Settings.NegativePromptColumnName is null ? null : redrawn.Select(i => rows[i].NegativePrompt ?? "").ToArray(), CheckAliveEachStep,
                onWarning: message => channel!.Warning(message))
            : Model.Inpaint(Settings.Inpainting, images, masks, seeds, CheckAliveEachStep, condition: condition);
        var parts = Split(inpainted, redrawn.Length);
        for (int k = 0; k < redrawn.Length; k++) result[redrawn[k]] = parts[k];
        return result;
    }

    private static VersionInfo VersionInfo => ModelPersistence.Version(ModelSignature, LoaderSignature, typeof(DiffusionInpaintingTransformer),
        written: ModelPersistence.HoldsLoraAdapters, readable: ModelPersistence.NestedSamplingSettings, readBackFrom: ModelPersistence.NestedSamplingSettings);

    private protected override VersionInfo GetVersionInfo() => VersionInfo;

    // Found by ML.NET's loader through [LoadableClass] when a zip containing this stage is loaded.
    internal static DiffusionInpaintingTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        const string component = "diffusion inpainting stage";
        ModelPersistence.CheckVersion(ctx, VersionInfo, component);
        var options = ModelPersistence.LoadSettings<DiffusionInpaintingOptions>(ctx, component);
        return new DiffusionInpaintingTransformer(env, ModelPersistence.LoadModel(ctx, env, component), options, ownsModel: true);
    }
}
