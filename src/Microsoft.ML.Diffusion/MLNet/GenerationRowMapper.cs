using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Row-at-a-time generation, for <c>PredictionEngine</c> and other row-to-row consumers: each
/// request runs the sampler on a batch of one.
/// </summary>
internal sealed class GenerationRowMapper(GenerationBinding binding) : IRowToRowMapper
{
    public DataViewSchema InputSchema => binding.InputSchema;

    public DataViewSchema OutputSchema => binding.OutputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
        => binding.InputColumnsFor(dependingColumns);

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
        => new Row(binding, input, activeColumns.Any(c => c.Index == binding.OutputIndex));

    private sealed class Row : DataViewRow
    {
        private readonly GenerationBinding _binding;
        private readonly DataViewRow _input;
        private readonly bool _outputActive;
        private readonly Func<GenerationRow>? _read;
        private GenerationRow? _cachedRow;
        private long _cachedPosition = -1;
        private float[] _cached = [];

        public Row(GenerationBinding binding, DataViewRow input, bool outputActive)
        {
            _binding = binding;
            _input = input;
            _outputActive = outputActive;
            if (outputActive) _read = binding.CreateRowReader(input);
        }

        public override DataViewSchema Schema => _binding.OutputSchema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column)
            => column.Index == _binding.OutputIndex ? _outputActive : _input.IsColumnActive(_input.Schema[column.Index]);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index < _binding.OutputIndex)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            if (!_outputActive)
                throw new InvalidOperationException($"Column '{column.Name}' was not requested.");
            if (_binding.MakeOutputGetter(Current) is not ValueGetter<TValue> getter)
                throw new InvalidOperationException($"Column '{column.Name}' holds {_binding.OutputType}, not {typeof(TValue).Name}.");
            return getter;
        }

        private float[] Current()
        {
            // A prediction engine reuses one row object, with the same position, for every request:
            // cache only while the position and every input (seed, condition, image, mask) stay the same.
            var row = _read!();
            if (_cachedPosition != _input.Position || _cached.Length == 0 || !row.SameInputs(_cachedRow))
            {
                _cached = _binding.Parent.SampleBatch([row], _binding.Condition)[0];
                _cachedRow = row;
                _cachedPosition = _input.Position;
            }
            return _cached;
        }
    }
}
