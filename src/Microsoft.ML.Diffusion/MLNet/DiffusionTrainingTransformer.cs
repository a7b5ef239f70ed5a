using Microsoft.ML.Data;
using Microsoft.ML;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;
using Microsoft.ML.Diffusion.Pipelines;

[assembly: LoadableClass(typeof(DiffusionTrainingTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Model", DiffusionTrainingTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The result of training (<see cref="DiffusionCatalog.TrainDiffusion(TransformsCatalog, DiffusionTrainingOptions)"/>):
/// it carries the trained <see cref="DiffusionModel"/> through a pipeline and into a model zip. Its
/// <see cref="Transform"/> passes data through unchanged; give it (or a chain that contains it) to
/// <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>
/// to generate images.
/// </summary>
public sealed class DiffusionTrainingTransformer : ITransformer, IDisposable
{
    internal const string LoaderSignature = "DiffusionModelXf";
    private const string ModelSignature = "DIFFMODL";

    private readonly IHost _host;

    // With a trained LoRA, the model is the start model it is fused into, which the transformer does not own.
    internal DiffusionTrainingTransformer(IHostEnvironment env, DiffusionModel model, string imageColumnName, string? conditionColumnName = null, FusedLora? lora = null)
    {
        ConditionColumnName = conditionColumnName;
        Lora = lora;
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionTrainingTransformer));
        Model = model ?? throw new ArgumentNullException(nameof(model));
        ImageColumnName = imageColumnName;
    }

    /// <summary>The trained model (noise predictor, schedule, prediction type); after LoRA training, the start model with the trained LoRA fused in.</summary>
    public DiffusionModel Model { get; }

    /// <summary>
    /// The LoRA trained by a LoRA run (<see cref="DiffusionTrainingOptions.Lora"/>), fused into <see cref="Model"/> at
    /// scale 1: <see cref="FusedLora.Save"/> writes it in diffusers' layout, <see cref="FusedLora.Unfuse"/> takes it out
    /// of the start model exactly. Null for whole-network training and for stages loaded from a model zip (whose model
    /// has the zip's adapters fused into its base again). A model zip of the stage holds the LoRA and refers to the start
    /// model's file as its base, so the start model must have been loaded from, or written to, a file.
    /// </summary>
    public FusedLora? Lora { get; }

    /// <summary>The image column the model was trained on.</summary>
    public string ImageColumnName { get; }

    /// <summary>The condition column the model was trained with, if it is conditional.</summary>
    public string? ConditionColumnName { get; }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => inputSchema;

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new PassThroughRowMapper(inputSchema);

    /// <inheritdoc/>
    public IDataView Transform(IDataView input) => input;

    private static VersionInfo GetVersionInfo() => ModelPersistence.Version(ModelSignature, LoaderSignature, typeof(DiffusionTrainingTransformer),
        written: ModelPersistence.HoldsLoraAdapters, readable: ModelPersistence.FirstVersion, readBackFrom: ModelPersistence.FirstVersion);

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        _host.CheckValue(ctx, nameof(ctx));
        ctx.CheckAtModel();
        ctx.SetVersionInfo(ModelPersistence.VersionFor(GetVersionInfo(), Model));
        ModelPersistence.SaveSettings(ctx, new Settings(ImageColumnName, ConditionColumnName));
        ModelPersistence.SaveModel(ctx, Model);
    }

    private sealed record Settings(string ImageColumnName, string? ConditionColumnName);

    // Found by ML.NET's loader through [LoadableClass] when a zip containing this stage is loaded.
    internal static DiffusionTrainingTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        ModelPersistence.CheckVersion(ctx, GetVersionInfo(), "diffusion model stage");
        var settings = ModelPersistence.LoadSettings<Settings>(ctx, "diffusion model stage");
        var model = ModelPersistence.LoadModel(ctx, env, "diffusion model stage");
        return new DiffusionTrainingTransformer(env, model, settings.ImageColumnName, settings.ConditionColumnName);
    }

    /// <summary>
    /// The diffusion model carried by <paramref name="transformer"/>: a <see cref="DiffusionTrainingTransformer"/>,
    /// a sampling stage (<see cref="DiffusionSamplingTransformer"/>), or a chain containing one.
    /// </summary>
    public static DiffusionModel FindModel(ITransformer transformer)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        return TryFindModel(transformer)
            ?? throw new ArgumentException($"The transformer ({transformer.GetType().Name}) contains no trained diffusion model. Pass the result of fitting a TrainDiffusion pipeline, or a model zip loaded from one.", nameof(transformer));
    }

    private static DiffusionModel? TryFindModel(ITransformer transformer) => TryFindStage(transformer) switch
    {
        DiffusionTrainingTransformer m => m.Model,
        DiffusionSamplingTransformer g => g.Model,
        _ => null,
    };

    /// <summary>The last diffusion stage (training result or generator) in <paramref name="transformer"/>, if any.</summary>
    internal static ITransformer? TryFindStage(ITransformer transformer) => transformer switch
    {
        DiffusionTrainingTransformer or DiffusionSamplingTransformer => transformer,
        IEnumerable<ITransformer> chain => chain.Reverse().Select(TryFindStage).FirstOrDefault(m => m is not null),
        _ => null,
    };

    /// <summary>Frees the trained model; after LoRA training, unfuses the LoRA from the start model instead, which stays the caller's.</summary>
    public void Dispose()
    {
        if (Lora is not null) Lora.Dispose();
        else ModelPersistence.DisposeModel(Model);
    }
}
