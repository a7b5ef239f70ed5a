using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The estimator behind <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>,
/// <see cref="DiffusionCatalog.DiffusionImageToImage(TransformsCatalog, ITransformer, DiffusionImageToImageOptions)"/> and
/// <see cref="DiffusionCatalog.DiffusionInpaint(TransformsCatalog, ITransformer, DiffusionInpaintingOptions)"/>.
/// Nothing is learned: <see cref="Fit"/> checks the input schema and returns the generating transformer.
/// </summary>
public sealed class DiffusionGenerationEstimator : IEstimator<DiffusionGenerationTransformer>
{
    private readonly IHost _host;
    private readonly DiffusionModel _model;
    private readonly DiffusionGenerationOptions _options;

    internal DiffusionGenerationEstimator(IHostEnvironment env, DiffusionModel model, DiffusionGenerationOptions options)
    {
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionGenerationEstimator));
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options is null ? throw new ArgumentNullException(nameof(options)) : options with { };
        _options.Validate();
    }

    /// <inheritdoc/>
    public DiffusionGenerationTransformer Fit(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        // A device of its own: the transformer generates with (and owns) a copy of the model there.
        var device = _options.Device is { } requested ? DiffusionDevice.Resolve(requested) : _model.Device;
        var transformer = DiffusionDevice.Same(device, _model.Device)
            ? new DiffusionGenerationTransformer(_host, _model, _options, ownsModel: false)
            : new DiffusionGenerationTransformer(_host, _model.CopyTo(device), _options, ownsModel: true);
        transformer.GetOutputSchema(input.Schema);   // fail now, with the column named, not at the first row
        return transformer;
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        if (_options.SeedColumnName is { } seed)
        {
            if (!inputSchema.TryFindColumn(seed, out var column))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{seed}' was not found in the input schema.");
            if (column.Kind != SchemaShape.Column.VectorKind.Scalar || !GenerationBinding.IsSeedType(column.ItemType))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{seed}' must hold scalar integers (or whole-number Single/Double), but it is {column.ItemType}.");
        }
        if (_options.ConditionColumnName is { } condition && !inputSchema.TryFindColumn(condition, out _))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Condition column '{condition}' was not found in the input schema.");
        if (_options is DiffusionImageToImageOptions edit) ImageColumn.Check(inputSchema, edit.ImageColumnName);
        if (_options is DiffusionInpaintingOptions inpaint)
        {
            ImageColumn.Check(inputSchema, inpaint.ImageColumnName);
            MaskColumn.Check(inputSchema, inpaint.MaskColumnName);
        }
        var shape = _model.ImageShape;
        columns[_options.OutputColumnName] = _options.OutputKind == GeneratedOutputKind.Image
            ? new SchemaShape.Column(_options.OutputColumnName, SchemaShape.Column.VectorKind.Scalar, new ImageDataViewType((int)shape[1], (int)shape[2]), false)
            : new SchemaShape.Column(_options.OutputColumnName, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false);
        return new SchemaShape(columns.Values);
    }
}
