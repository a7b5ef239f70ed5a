using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(DiffusionImageToImageTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Image To Image", DiffusionImageToImageTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>Redraws each input row's image to the options' strength (SDEdit), its noise from the row's seed.</summary>
public sealed class DiffusionImageToImageTransformer : DiffusionSamplingTransformer
{
    internal const string LoaderSignature = "DiffusionImg2ImgXf";
    private const string ModelSignature = "DIFFI2IR";

    internal DiffusionImageToImageTransformer(IHostEnvironment env, DiffusionModel model, DiffusionImageToImageOptions options, bool ownsModel)
        : base(env, nameof(DiffusionImageToImageTransformer), model, options, ownsModel)
    {
    }

    /// <summary>The image-to-image settings (a copy; changing it does not affect this transformer).</summary>
    public DiffusionImageToImageOptions Options => (DiffusionImageToImageOptions)Settings.Snapshot();

    private DiffusionImageToImageOptions Settings => (DiffusionImageToImageOptions)StageSettings;

    // A latent model edits images of the options' size (its own when unset); a pixel model images of its size.
    internal override long[] OutputShape => SamplingStageShape.EditingShape(Model, Settings.Generation.Height, Settings.Generation.Width);

    internal override (ImageColumn? Image, MaskColumn? Mask) BindImageColumns(DataViewSchema inputSchema, int channels, int height, int width)
        => (ImageColumn.Resolve(inputSchema, Settings.ImageColumnName, channels, height, width, Settings.PixelRange), null);

    internal override float[][] SampleBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn)
    {
        if (Model.TakesPrompts)
        {
            var prompts = rows.Select(r => r.Condition as string ?? "").ToArray();
            var negatives = Settings.NegativePromptColumnName is null ? null : rows.Select(r => r.NegativePrompt ?? "").ToArray();
            using var channel = Host.Start("Image to image");
            using var input = StackImages(rows.Select(r => r.Image!));
            using var drawn = Model.ImageToImageWithPrompts(Settings.Generation, input, Settings.Strength, prompts, rows.Select(r => r.Seed).ToArray(), negatives,
                CheckAliveEachStep, onWarning: message => channel.Warning(message));
            return Split(drawn, rows.Count);
        }
        using var condition = conditionColumn?.ToBatch(rows.Select(r => r.Condition!).ToList());
        using var images = StackImages(rows.Select(r => r.Image!));
        using var edited = Model.ImageToImage(Settings.Generation, images, Settings.Strength, rows.Select(r => r.Seed).ToArray(), CheckAliveEachStep,
            condition: condition);
        return Split(edited, rows.Count);
    }

    private static VersionInfo VersionInfo => ModelPersistence.Version(ModelSignature, LoaderSignature, typeof(DiffusionImageToImageTransformer),
        written: ModelPersistence.HoldsLoraAdapters, readable: ModelPersistence.NestedSamplingSettings, readBackFrom: ModelPersistence.NestedSamplingSettings);

    private protected override VersionInfo GetVersionInfo() => VersionInfo;

    // Found by ML.NET's loader through [LoadableClass] when a zip containing this stage is loaded.
    internal static DiffusionImageToImageTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        const string component = "diffusion image-to-image stage";
        ModelPersistence.CheckVersion(ctx, VersionInfo, component);
        var options = ModelPersistence.LoadSettings<DiffusionImageToImageOptions>(ctx, component);
        return new DiffusionImageToImageTransformer(env, ModelPersistence.LoadModel(ctx, env, component), options, ownsModel: true);
    }
}
