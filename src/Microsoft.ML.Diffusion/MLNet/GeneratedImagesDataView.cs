using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The data view <see cref="DiffusionSamplingTransformer.Transform"/> returns: the input rows plus a
/// generated column, filled a batch at a time. A second cursor over the input reads ahead the seeds (conditions, images, masks) of
/// the next <see cref="DiffusionStageOptions.BatchSize"/> rows so that one sampler run serves them all.
/// </summary>
internal sealed class GeneratedImagesDataView(GenerationBinding binding, IDataView input) : IDataView
{
    public bool CanShuffle => false;

    public DataViewSchema Schema => binding.OutputSchema;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToArray();
        bool outputActive = needed.Any(c => c.Index == binding.OutputIndex);
        var main = input.GetRowCursor(needed.Where(c => c.Index < binding.OutputIndex).Select(c => input.Schema[c.Index]));
        DataViewRowCursor? lookahead = null;
        if (outputActive)
            lookahead = input.GetRowCursor(binding.GenerationInputs());
        return new Cursor(binding, main, lookahead, outputActive);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
        => [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly GenerationBinding _binding;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _lookahead;
        private readonly Func<GenerationRow>? _lookaheadRow;
        private readonly bool _outputActive;
        private long _batchStart = -1;
        private float[][] _batch = [];

        public Cursor(GenerationBinding binding, DataViewRowCursor main, DataViewRowCursor? lookahead, bool outputActive)
        {
            _binding = binding;
            _main = main;
            _lookahead = lookahead;
            _outputActive = outputActive;
            if (lookahead is not null) _lookaheadRow = binding.CreateRowReader(lookahead);
        }

        public override DataViewSchema Schema => _binding.OutputSchema;

        public override long Position => _main.Position;

        public override long Batch => _main.Batch;

        public override bool MoveNext() => _main.MoveNext();

        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column)
            => column.Index == _binding.OutputIndex ? _outputActive : _main.IsColumnActive(_main.Schema[column.Index]);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index < _binding.OutputIndex)
                return _main.GetGetter<TValue>(_main.Schema[column.Index]);
            if (!_outputActive)
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            if (_binding.MakeOutputGetter(() => ImageAt(_main.Position)) is not ValueGetter<TValue> getter)
                throw new InvalidOperationException($"Column '{column.Name}' holds {_binding.OutputType}, not {typeof(TValue).Name}.");
            return getter;
        }

        private float[] ImageAt(long position)
        {
            if (position < 0) throw new InvalidOperationException("The cursor is not on a row.");
            if (position >= _batchStart && position < _batchStart + _batch.Length)
                return _batch[position - _batchStart];

            // Move the look-ahead cursor to this row, then read the inputs of up to BatchSize rows from here.
            var lookahead = _lookahead!;
            while (lookahead.Position < position)
                if (!lookahead.MoveNext())
                    throw new InvalidOperationException("The input data view returned fewer rows on a second pass; generation needs an input that can be read twice in the same order.");
            var rows = new List<GenerationRow>();
            do rows.Add(_lookaheadRow!());
            while (rows.Count < _binding.Parent.StageSettings.BatchSize && lookahead.MoveNext());
            _batch = _binding.Parent.SampleBatch(rows, _binding.Condition);
            _batchStart = position;
            return _batch[0];
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _main.Dispose();
                _lookahead?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
