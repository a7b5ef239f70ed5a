using Microsoft.ML.Data;
using Microsoft.ML;
namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>A row-to-row mapper that hands rows through unchanged.</summary>
internal sealed class PassThroughRowMapper(DataViewSchema schema) : IRowToRowMapper
{
    public DataViewSchema InputSchema { get; } = schema;

    public DataViewSchema OutputSchema => InputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns) => dependingColumns;

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) => input;
}
