using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

[assembly: LoadableClass(typeof(DiffusionGenerationTransformer), null, typeof(SignatureLoadModel),
    "Diffusion Generation", DiffusionGenerationTransformer.LoaderSignature)]

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Maps each input row to an image made by the diffusion model, running the sampler once per batch of rows: generated from
/// the row's seed (<see cref="DiffusionGenerationOptions"/>), or the row's image edited (<see cref="DiffusionImageToImageOptions"/>,
/// <see cref="DiffusionInpaintingOptions"/>). Saved with its model and settings inside ML.NET model zips.
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

    /// <summary>
    /// One sampler run for a batch of rows: generation from their seeds, or the edit the settings ask for (image-to-image,
    /// inpainting) of their images. Planar (C, H, W) pixels in [−1, 1] per row.
    /// </summary>
    internal float[][] GenerateBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn)
    {
        if (Settings is DiffusionInpaintingOptions inpainting) return InpaintBatch(rows, conditionColumn, inpainting);
        var seeds = rows.Select(r => r.Seed).ToArray();
        using var condition = conditionColumn?.ToBatch(rows.Select(r => r.Condition!).ToList());
        Action<int, int> onStep = (_, _) => _host.CheckAlive();
        if (Settings is DiffusionImageToImageOptions edit)
        {
            using var images = StackImages(rows.Select(r => r.Image!));
            using var edited = Model.ImageToImage(Settings, images, edit.Strength, seeds, onStep, condition: condition);
            return Split(edited, rows.Count);
        }
        using var generated = Model.Generate(Settings, seeds, onStep, condition: condition);
        return Split(generated, rows.Count);
    }

    // Rows whose mask is all zeros come back as they are; the others are inpainted together.
    private float[][] InpaintBatch(IReadOnlyList<GenerationRow> rows, ConditionColumn? conditionColumn, DiffusionInpaintingOptions options)
    {
        var result = rows.Select(r => r.Image!).ToArray();
        var redrawn = Enumerable.Range(0, rows.Count).Where(i => rows[i].Mask!.Any(v => v > 0)).ToArray();
        if (redrawn.Length == 0) return result;
        var shape = Model.ImageShape;
        int maskChannels = rows[0].Mask!.Length / (int)(shape[1] * shape[2]);
        using var condition = conditionColumn?.ToBatch(redrawn.Select(i => rows[i].Condition!).ToList());
        using var images = StackImages(redrawn.Select(i => rows[i].Image!));
        using var masks = torch.tensor(redrawn.SelectMany(i => rows[i].Mask!).ToArray(), [redrawn.Length, maskChannels, shape[1], shape[2]]);
        using var inpainted = Model.Inpaint(options.ToInpaintingOptions(), images, masks, redrawn.Select(i => rows[i].Seed).ToArray(),
            (_, _) => _host.CheckAlive(), condition: condition);
        var parts = Split(inpainted, redrawn.Length);
        for (int k = 0; k < redrawn.Length; k++) result[redrawn[k]] = parts[k];
        return result;
    }

    private torch.Tensor StackImages(IEnumerable<float[]> images)
    {
        var all = images.ToArray();
        return torch.tensor(all.SelectMany(p => p).ToArray(), [all.Length, .. Model.ImageShape]);
    }

    private static float[][] Split(torch.Tensor images, int count)
    {
        using var onCpu = images.device_type == DeviceType.CPU ? null : images.cpu();   // a copy only for GPU results
        float[] all = (onCpu ?? images).data<float>().ToArray();
        int length = all.Length / count;
        var result = new float[count][];
        for (int i = 0; i < count; i++) result[i] = all.AsSpan(i * length, length).ToArray();
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
        if (ctx.Header.ModelVerWritten < ModelPersistence.KeepsModelNoiseAfterClipping)
            options = options with { UseClippedModelOutput = true };   // generates as it did when it was saved
        var model = ModelPersistence.LoadModel(ctx, env, "diffusion generation stage");
        return new DiffusionGenerationTransformer(env, model, options, ownsModel: true);
    }

    /// <summary>Frees the model's tensors if this transformer owns the model (it was loaded from a zip).</summary>
    public void Dispose()
    {
        if (_ownsModel) Model.Dispose();
    }
}
