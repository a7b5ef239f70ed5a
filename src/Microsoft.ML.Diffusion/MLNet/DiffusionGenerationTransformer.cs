using Microsoft.ML;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Runtime;

// The loader returns ITransformer: zips saved before each verb had its own stage hold image-to-image and inpainting
// stages under this signature, and load as the stage they were built as.
[assembly: LoadableClass(typeof(ITransformer), typeof(DiffusionGenerationTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Generation", DiffusionGenerationTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>Generates an image for each input row from its seed (and condition, for a conditional model).</summary>
public sealed class DiffusionGenerationTransformer : DiffusionSamplingTransformer
{
    internal const string LoaderSignature = "DiffusionGenerateXf";
    private const string ModelSignature = "DIFFGENR";

    internal DiffusionGenerationTransformer(IHostEnvironment env, DiffusionModel model, DiffusionGenerationOptions options, bool ownsModel)
        : base(env, nameof(DiffusionGenerationTransformer), model, options, ownsModel)
    {
    }

    /// <summary>The generation settings (a copy; changing it does not affect this transformer).</summary>
    public DiffusionGenerationOptions Options => (DiffusionGenerationOptions)Settings.Snapshot();

    private DiffusionGenerationOptions Settings => (DiffusionGenerationOptions)StageSettings;

    internal override long[] OutputShape => OutputShapeOf(Model, Settings.Generation);

    // A latent model draws at the options' size; a pixel model at its own.
    internal static long[] OutputShapeOf(DiffusionModel model, GenerationOptions options) => model.IsLatent
        ? [model.ImageShape[0], options.Height ?? model.ImageShape[1], options.Width ?? model.ImageShape[2]]
        : model.ImageShape;

    internal override float[][] SampleBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn)
    {
        if (Model.TakesPrompts)
        {
            var prompts = rows.Select(r => r.Condition as string ?? "").ToArray();
            var negatives = Settings.NegativePromptColumnName is null ? null : rows.Select(r => r.NegativePrompt ?? "").ToArray();
            using var channel = Host.Start("Text to image");
            using var drawn = Model.TextToImage(Settings.Generation, prompts, rows.Select(r => r.Seed).ToArray(), negatives, CheckAliveEachStep,
                onWarning: message => channel.Warning(message));
            return Split(drawn, rows.Count);
        }
        using var condition = conditionColumn?.ToBatch(rows.Select(r => r.Condition!).ToList());
        using var generated = Model.Generate(Settings.Generation, rows.Select(r => r.Seed).ToArray(), CheckAliveEachStep, condition: condition);
        return Split(generated, rows.Count);
    }

    private static VersionInfo VersionInfo => ModelPersistence.Version(ModelSignature, LoaderSignature, typeof(DiffusionGenerationTransformer),
        written: ModelPersistence.HoldsLoraAdapters, readable: ModelPersistence.NestedSamplingSettings, readBackFrom: ModelPersistence.FirstVersion);

    private protected override VersionInfo GetVersionInfo() => VersionInfo;

    // Found by ML.NET's loader through [LoadableClass] when a zip containing this stage is loaded.
    internal static ITransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        const string component = "diffusion generation stage";
        ModelPersistence.CheckVersion(ctx, VersionInfo, component);
        var options = ModelPersistence.LoadStageSettings<DiffusionGenerationOptions>(ctx, component);
        var model = ModelPersistence.LoadModel(ctx, env, component);
        return options switch
        {
            DiffusionImageToImageOptions edit => new DiffusionImageToImageTransformer(env, model, edit, ownsModel: true),
            DiffusionInpaintingOptions inpaint => new DiffusionInpaintingTransformer(env, model, inpaint, ownsModel: true),
            _ => new DiffusionGenerationTransformer(env, model, (DiffusionGenerationOptions)options, ownsModel: true),
        };
    }
}
