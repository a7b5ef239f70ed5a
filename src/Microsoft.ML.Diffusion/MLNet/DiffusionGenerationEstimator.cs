using Microsoft.ML;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The estimator behind <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>.
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
        _options = options is null ? throw new ArgumentNullException(nameof(options)) : (DiffusionGenerationOptions)options.Snapshot();
        _options.Validate();
    }

    /// <inheritdoc/>
    public DiffusionGenerationTransformer Fit(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        var (model, owned) = SamplingStageShape.ModelFor(_model, _options);
        var transformer = new DiffusionGenerationTransformer(_host, model, _options, owned);
        transformer.GetOutputSchema(input.Schema);   // fail now, with the column named, not at the first row
        return transformer;
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
        => SamplingStageShape.OutputSchema(inputSchema, _options, _model, shape: DiffusionGenerationTransformer.OutputShapeOf(_model, _options.Generation));
}
