using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(DiffusionGenerationTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Generation", DiffusionGenerationTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Maps each input row (its seed) to a generated image, running the sampler once per batch of rows.
/// Saved with its model inside ML.NET model zips.
/// </summary>
public sealed class DiffusionGenerationTransformer : ITransformer, IDisposable
{
    internal const string LoaderSignature = "DiffusionGenerateXf";
    private const string ModelSignature = "DIFFGENR";

    private readonly IHost _host;
    private readonly bool _ownsModel;

    // ownsModel: a transformer loaded from a zip owns its model; one built from another stage's model
    // shares it, and disposing it (as PredictionEngine.Dispose does) must leave that model alive.
    internal DiffusionGenerationTransformer(IHostEnvironment env, DiffusionModel model, DiffusionGenerationOptions options, bool ownsModel)
    {
        _ownsModel = ownsModel;
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionGenerationTransformer));
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Settings = options with { };
        Settings.Validate();
    }

    /// <summary>The model that generates.</summary>
    public DiffusionModel Model { get; }

    /// <summary>The generation settings (a copy; changing it does not affect this transformer).</summary>
    public DiffusionGenerationOptions Options => Settings with { };

    // The transformer's own snapshot of the options.
    internal DiffusionGenerationOptions Settings { get; }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Bind(inputSchema).OutputSchema;

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new GenerationRowMapper(Bind(inputSchema));

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        return new GeneratedImagesDataView(Bind(input.Schema), input);
    }

    private GenerationBinding Bind(DataViewSchema inputSchema)
    {
        _host.CheckValue(inputSchema, nameof(inputSchema));
        return new GenerationBinding(this, inputSchema);
    }

    /// <summary>One sampler run for a batch of seeds; planar (C, H, W) pixels in [−1, 1] per image.</summary>
    internal float[][] GenerateBatch(IReadOnlyList<long> seeds, ConditionColumn? conditionColumn, IReadOnlyList<object> conditions)
    {
        float[] all;
        using (var condition = conditionColumn?.ToBatch(conditions))
        using (var images = Model.Generate(Settings, seeds, onStep: (_, _) => _host.CheckAlive(), condition: condition))
            all = images.cpu().data<float>().ToArray();
        int length = all.Length / seeds.Count;
        var result = new float[seeds.Count][];
        for (int i = 0; i < seeds.Count; i++) result[i] = all.AsSpan(i * length, length).ToArray();
        return result;
    }

    private static VersionInfo GetVersionInfo() => ModelPersistence.Version(ModelSignature, LoaderSignature, typeof(DiffusionGenerationTransformer));

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        _host.CheckValue(ctx, nameof(ctx));
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        ModelPersistence.SaveSettings(ctx, Settings);
        ModelPersistence.SaveModel(ctx, Model);
    }

    // Found by ML.NET's loader through [LoadableClass] when a zip containing this stage is loaded.
    internal static DiffusionGenerationTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        ModelPersistence.CheckVersion(ctx, GetVersionInfo(), "diffusion generation stage");
        var options = ModelPersistence.LoadSettings<DiffusionGenerationOptions>(ctx, "diffusion generation stage");
        var model = ModelPersistence.LoadModel(ctx, env, "diffusion generation stage");
        return new DiffusionGenerationTransformer(env, model, options, ownsModel: true);
    }

    /// <summary>Frees the model's tensors if this transformer owns the model (it was loaded from a zip).</summary>
    public void Dispose()
    {
        if (_ownsModel) Model.Dispose();
    }
}
