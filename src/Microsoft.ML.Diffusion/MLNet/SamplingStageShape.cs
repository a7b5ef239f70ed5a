using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>What the sampling stages' estimators share: the device their transformer samples on, and the schema checks before fitting.</summary>
internal static class SamplingStageShape
{
    /// <summary>
    /// The model the transformer samples with: <paramref name="model"/> itself, or, for a device of the options' own, a copy
    /// there that the transformer owns (a Stable Diffusion model loaded again from its files), with copies of the LoRA
    /// adapters fused into the model fused into it, so that its zips too refer to the base and hold the adapters.
    /// </summary>
    public static (DiffusionModel Model, bool Owned) ModelFor(DiffusionModel model, DiffusionStageOptions options)
    {
        var device = options.Device is { } requested ? DiffusionDevice.Resolve(requested) : model.Device;
        if (DiffusionDevice.Same(device, model.Device)) return (model, false);
        var copy = model.Source is { } source && (model.IsLatent || model.TakesPrompts) ? Internal.ReferencedModel.Load(source, device) : model.CopyTo(device);
        try
        {
            copy.Source ??= model.Source;
            LoraFusion.Of(model).CopyInto(copy);
        }
        catch
        {
            copy.Dispose();
            throw;
        }
        return (copy, true);
    }

    /// <summary>
    /// The (C, H, W) of the images an editing stage reads and writes: for a latent model the given size or its own, each a
    /// multiple of the autoencoder's factor (an <see cref="ArgumentException"/> says so otherwise); a pixel model's own shape.
    /// </summary>
    public static long[] EditingShape(DiffusionModel model, int? height, int? width)
    {
        if (!model.IsLatent) return model.ImageShape;
        var (h, w) = Pipelines.LatentSize.Of(model, height, width, "options");
        return [model.ImageShape[0], h, w];
    }

    /// <summary>The input schema plus the stage's output column, after checking the seed and condition columns and <paramref name="checkInputs"/>.</summary>
    public static SchemaShape OutputSchema(SchemaShape inputSchema, DiffusionStageOptions options, DiffusionModel model, Action<SchemaShape>? checkInputs = null,
        long[]? shape = null)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        if (options.SeedColumnName is { } seed)
        {
            if (!inputSchema.TryFindColumn(seed, out var column))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{seed}' was not found in the input schema.");
            if (column.Kind != SchemaShape.Column.VectorKind.Scalar || !GenerationBinding.IsSeedType(column.ItemType))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{seed}' must hold scalar integers (or whole-number Single/Double), but it is {column.ItemType}.");
        }
        if (options.ConditionColumnName is { } condition && !inputSchema.TryFindColumn(condition, out _))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Condition column '{condition}' was not found in the input schema.");
        checkInputs?.Invoke(inputSchema);
        shape ??= model.ImageShape;
        columns[options.OutputColumnName] = options.OutputKind == GeneratedOutputKind.Image
            ? new SchemaShape.Column(options.OutputColumnName, SchemaShape.Column.VectorKind.Scalar, new ImageDataViewType((int)shape[1], (int)shape[2]), false)
            : new SchemaShape.Column(options.OutputColumnName, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false);
        return new SchemaShape(columns.Values);
    }
}
