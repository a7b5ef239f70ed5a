using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// What the sampling stages share (<see cref="DiffusionGenerationTransformer"/>, <see cref="DiffusionImageToImageTransformer"/>,
/// <see cref="DiffusionInpaintingTransformer"/>): each input row gets an image made by the model, the sampler running once
/// per batch of rows; the stage is saved with its model and settings inside ML.NET model zips.
/// </summary>
public abstract class DiffusionSamplingTransformer : ITransformer, IDisposable
{
    private readonly bool _ownsModel;

    // ownsModel: a transformer loaded from a zip owns its model; one built from another stage's model
    // shares it, and disposing it (as PredictionEngine.Dispose does) must leave that model alive.
    private protected DiffusionSamplingTransformer(IHostEnvironment env, string name, DiffusionModel model, DiffusionStageOptions options, bool ownsModel)
    {
        _ownsModel = ownsModel;
        Host = Contracts.CheckRef(env, nameof(env)).Register(name);
        Model = model ?? throw new ArgumentNullException(nameof(model));
        StageSettings = options.Snapshot();
        StageSettings.Validate();
    }

    private protected IHost Host { get; }

    /// <summary>The model that samples.</summary>
    public DiffusionModel Model { get; }

    // The transformer's own snapshot of the options.
    internal DiffusionStageOptions StageSettings { get; }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Bind(inputSchema).OutputSchema;

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new GenerationRowMapper(Bind(inputSchema));

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        Host.CheckValue(input, nameof(input));
        return new GeneratedImagesDataView(Bind(input.Schema), input);
    }

    private GenerationBinding Bind(DataViewSchema inputSchema)
    {
        Host.CheckValue(inputSchema, nameof(inputSchema));
        return new GenerationBinding(this, inputSchema);
    }

    /// <summary>The shape (C, H, W) of the images the stage adds.</summary>
    internal virtual long[] OutputShape => Model.ImageShape;

    /// <summary>The image (and mask) columns the stage reads besides seed and condition, resolved against the input schema.</summary>
    internal virtual (ImageColumn? Image, MaskColumn? Mask) BindImageColumns(DataViewSchema inputSchema, int channels, int height, int width) => (null, null);

    /// <summary>One sampler run for a batch of rows: planar (C, H, W) pixels in [−1, 1] per row.</summary>
    internal abstract float[][] SampleBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn);

    private protected Action<int, int> CheckAliveEachStep => (_, _) => Host.CheckAlive();

    private protected Tensor StackImages(IEnumerable<float[]> images)
    {
        var all = images.ToArray();
        return torch.tensor(all.SelectMany(p => p).ToArray(), [all.Length, .. OutputShape]);
    }

    private protected static float[][] Split(Tensor images, int count)
    {
        using var onCpu = images.device_type == DeviceType.CPU ? null : images.cpu();   // a copy only for GPU results
        float[] all = (onCpu ?? images).data<float>().ToArray();
        int length = all.Length / count;
        var result = new float[count][];
        for (int i = 0; i < count; i++) result[i] = all.AsSpan(i * length, length).ToArray();
        return result;
    }

    private protected abstract VersionInfo GetVersionInfo();

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        Host.CheckValue(ctx, nameof(ctx));
        ctx.CheckAtModel();
        ctx.SetVersionInfo(ModelPersistence.VersionFor(GetVersionInfo(), Model));
        ModelPersistence.SaveSettings(ctx, StageSettings);
        ModelPersistence.SaveModel(ctx, Model);
    }

    /// <summary>Frees the model's tensors if this transformer owns the model (it was loaded from a zip).</summary>
    public void Dispose()
    {
        if (_ownsModel) ModelPersistence.DisposeModel(Model);
        GC.SuppressFinalize(this);
    }
}
