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
        private readonly Func<long>? _seed;
        private readonly Func<object>? _condition;
        private long _cachedPosition = -1;
        private float[] _cached = [];

        public Row(GenerationBinding binding, DataViewRow input, bool outputActive)
        {
            _binding = binding;
            _input = input;
            _outputActive = outputActive;
            if (outputActive)
            {
                _seed = binding.CreateSeedReader(input);
                _condition = binding.CreateConditionReader(input);
            }
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
            // cache only while the position, the seed and the condition all stay the same.
            long seed = _seed!();
            object? condition = _condition?.Invoke();
            string conditionKey = condition switch { long[] l => string.Join(",", l), float[] f => string.Join(",", f), _ => "" };
            if (_cachedPosition != _input.Position || _cached.Length == 0 || _cachedSeed != seed || _cachedCondition != conditionKey)
            {
                _cached = _binding.Parent.GenerateBatch([seed], _binding.Condition, condition is null ? [] : [condition])[0];
                _cachedCondition = conditionKey;
                _cachedPosition = _input.Position;
                _cachedSeed = seed;
            }
            return _cached;
        }

        private long _cachedSeed;
        private string _cachedCondition = "";
    }
}
