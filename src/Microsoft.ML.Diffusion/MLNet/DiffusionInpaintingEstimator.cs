using Microsoft.ML;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The estimator behind <see cref="DiffusionCatalog.DiffusionInpaint(TransformsCatalog, ITransformer, DiffusionInpaintingOptions)"/>.
/// Nothing is learned: <see cref="Fit"/> checks the input schema and returns the inpainting transformer.
/// </summary>
public sealed class DiffusionInpaintingEstimator : IEstimator<DiffusionInpaintingTransformer>
{
    private readonly IHost _host;
    private readonly DiffusionModel _model;
    private readonly DiffusionInpaintingOptions _options;

    internal DiffusionInpaintingEstimator(IHostEnvironment env, DiffusionModel model, DiffusionInpaintingOptions options)
    {
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionInpaintingEstimator));
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options is null ? throw new ArgumentNullException(nameof(options)) : (DiffusionInpaintingOptions)options.Snapshot();
        _options.Validate();
    }

    /// <inheritdoc/>
    public DiffusionInpaintingTransformer Fit(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        var (model, owned) = SamplingStageShape.ModelFor(_model, _options);
        var transformer = new DiffusionInpaintingTransformer(_host, model, _options, owned);
        transformer.GetOutputSchema(input.Schema);   // fail now, with the column named, not at the first row
        return transformer;
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
        => SamplingStageShape.OutputSchema(inputSchema, _options, _model, schema =>
        {
            ImageColumn.Check(schema, _options.ImageColumnName);
            MaskColumn.Check(schema, _options.MaskColumnName);
        }, SamplingStageShape.EditingShape(_model, _options.Height, _options.Width));
}
