using Microsoft.ML;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The estimator behind <see cref="DiffusionCatalog.DiffusionImageToImage(TransformsCatalog, ITransformer, DiffusionImageToImageOptions)"/>.
/// Nothing is learned: <see cref="Fit"/> checks the input schema and returns the image-to-image transformer.
/// </summary>
public sealed class DiffusionImageToImageEstimator : IEstimator<DiffusionImageToImageTransformer>
{
    private readonly IHost _host;
    private readonly DiffusionModel _model;
    private readonly DiffusionImageToImageOptions _options;

    internal DiffusionImageToImageEstimator(IHostEnvironment env, DiffusionModel model, DiffusionImageToImageOptions options)
    {
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionImageToImageEstimator));
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options is null ? throw new ArgumentNullException(nameof(options)) : (DiffusionImageToImageOptions)options.Snapshot();
        _options.Validate();
    }

    /// <inheritdoc/>
    public DiffusionImageToImageTransformer Fit(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        var (model, owned) = SamplingStageShape.ModelFor(_model, _options);
        var transformer = new DiffusionImageToImageTransformer(_host, model, _options, owned);
        transformer.GetOutputSchema(input.Schema);   // fail now, with the column named, not at the first row
        return transformer;
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
        => SamplingStageShape.OutputSchema(inputSchema, _options, _model, schema => ImageColumn.Check(schema, _options.ImageColumnName),
            SamplingStageShape.EditingShape(_model, _options.Generation.Height, _options.Generation.Width));
}
