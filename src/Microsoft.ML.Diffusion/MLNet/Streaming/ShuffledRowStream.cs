using Microsoft.ML.Diffusion.Training;

namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>
/// Turns passes over an <see cref="IDataView"/> into an endless, seeded, shuffled sequence of training
/// batches, holding at most <c>capacity</c> rows. Rows are read in view order into a shuffle buffer;
/// once it is full, each batch row is drawn uniformly from it and replaced by the next row read (passes
/// follow each other without a break, so rows of consecutive passes mix at the seam). A data set that
/// ends before the buffer is full is kept: every later epoch is then a uniformly random permutation of
/// it, and the view is not read again. The sequence depends only on the seed, the data and the sizes,
/// and <see cref="StreamPosition"/> captures it exactly, so a resumed run continues bit for bit.
/// Not thread-safe: one producer uses it.
/// </summary>
internal sealed class ShuffledRowStream : IDisposable
{
    private const int SkippedRowsListed = 10;

    private readonly IDataView _data;
    private readonly ImageColumn _image;
    private readonly ConditionColumn? _condition;
    private readonly int _batchSize;
    private readonly int _capacity;
    private readonly bool _skipBadRows;
    private readonly StreamRandom _random;
    private readonly List<Slot> _slots = [];
    private readonly List<long> _firstSkipped;
    private readonly System.Collections.Concurrent.ConcurrentBag<float[]> _spareBatches = [];   // batch arrays handed back by the trainer
    private StreamPosition? _pendingRestore;
    private TrainingRowReader? _reader;
    private Slot? _spare;                 // the slot last emitted, whose arrays the next row reuses
    private long _pass, _rowsIntoPass, _skipped;
    private long? _rowsPerPass;
    private bool _cached;
    private long[]? _cachedRows;          // cached mode: the rows held, in slot order (shared by positions; never changed)
    private int[]? _order;                // cached mode: the epoch's permutation of slots (replaced, never changed in place)
    private int _orderPosition;

    private sealed class Slot(int length)
    {
        public long Row;
        public readonly float[] Pixels = new float[length];
        public object? Condition;
    }

    public ShuffledRowStream(IDataView data, ImageColumn image, ConditionColumn? condition, int batchSize, int capacity, bool skipBadRows, StreamPosition position)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be positive.");
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "The shuffle buffer must hold at least one row.");
        _data = data;
        _image = image;
        _condition = condition;
        _batchSize = batchSize;
        _capacity = capacity;
        _skipBadRows = skipBadRows;
        _random = new StreamRandom(position.Random);
        _pass = position.Pass;
        _rowsIntoPass = position.RowsIntoPass;
        _rowsPerPass = position.RowsPerPass;
        _skipped = position.SkippedRows;
        _firstSkipped = [.. position.FirstSkippedRows];
        _cached = position.Cached;
        _order = position.Order;
        _orderPosition = position.OrderPosition;
        if (position.Buffer.Length > 0) _pendingRestore = position;
    }

    /// <summary>Takes back a batch's pixel array once its contents have been copied (safe from any thread).</summary>
    public void ReturnPixels(float[] pixels)
    {
        if (pixels.Length == _batchSize * _image.Length && _spareBatches.Count < 8) _spareBatches.Add(pixels);
    }

    /// <summary>Rows whose pixels have been read from the view (restoring a saved buffer counts too).</summary>
    public long RowsRead { get; private set; }

    /// <summary>The next batch; reads rows from the view as needed.</summary>
    public TrainingBatch NextBatch(CancellationToken cancellationToken)
    {
        if (_pendingRestore is { } saved)
        {
            Restore(saved, cancellationToken);
            _pendingRestore = null;
        }
        int length = _image.Length;
        var pixels = _spareBatches.TryTake(out var reused) ? reused : new float[_batchSize * length];
        var conditions = _condition is null ? null : new object?[_batchSize];
        for (int i = 0; i < _batchSize; i++)
        {
            var slot = NextRow(cancellationToken);
            slot.Pixels.CopyTo(pixels, i * length);
            if (conditions is not null) conditions[i] = slot.Condition;
        }
        return new TrainingBatch(pixels, conditions, _batchSize, Position());
    }

    private Slot NextRow(CancellationToken cancellationToken)
    {
        if (!_cached) Fill(cancellationToken);
        if (_cached)
        {
            if (_order is null || _orderPosition == _order.Length) NewEpochOrder();
            return _slots[_order![_orderPosition++]];
        }
        int j = _random.Next(_slots.Count);
        var chosen = _slots[j];
        _slots[j] = _slots[^1];
        _slots.RemoveAt(_slots.Count - 1);
        _spare = chosen;   // still read by the caller; the next row read reuses it
        return chosen;
    }

    // Reads rows until the buffer is full, or until the first pass ends with every row in it (then the data is cached).
    private void Fill(CancellationToken cancellationToken)
    {
        while (!_cached && _slots.Count < _capacity)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _reader ??= OpenAt(_rowsIntoPass, cancellationToken);
            if (!_reader.MoveNext())
            {
                EndPass();
                continue;
            }
            var slot = _spare ?? new Slot(_image.Length);
            _spare = null;
            var error = _reader.TryRead(slot.Pixels, out var condition);
            long row = _rowsIntoPass++;
            if (error is null)
            {
                slot.Row = row;
                slot.Condition = condition;
                _slots.Add(slot);
                RowsRead++;
                continue;
            }
            _spare = slot;
            if (!_skipBadRows) throw error;
            if (_pass == 0)   // each bad row is counted once, not once per pass
            {
                _skipped++;
                if (_firstSkipped.Count < SkippedRowsListed) _firstSkipped.Add(row);
            }
        }
    }

    private void EndPass()
    {
        long rows = _rowsIntoPass;
        _reader!.Dispose();
        _reader = null;
        if (_rowsPerPass is null)
        {
            if (rows == 0)
                throw new InvalidOperationException($"The training data has no rows in image column '{_image.Name}'.");
            if (_slots.Count == 0 && _pass == 0)
                throw new InvalidOperationException($"None of the {rows} training rows could be read ({_skipped} skipped as unreadable, first at row{(_firstSkipped.Count > 1 ? "s" : "")} {string.Join(", ", _firstSkipped)}).");
            _rowsPerPass = rows;
            if (_slots.Count == rows - _skipped)
            {
                // Nothing has been drawn yet and every usable row is in the buffer: the whole data set fits; keep it and walk a fresh permutation each epoch.
                _cached = true;
                _cachedRows = _slots.Select(s => s.Row).ToArray();
            }
        }
        else if (rows != _rowsPerPass)
        {
            throw new InvalidOperationException($"The training data had {_rowsPerPass} rows in its first pass but {rows} in pass {_pass + 1}; streamed training needs a view that yields the same rows on every pass.");
        }
        _pass++;
        _rowsIntoPass = 0;
    }

    private void NewEpochOrder()
    {
        var order = new int[_slots.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        for (int i = order.Length - 1; i > 0; i--)   // Fisher–Yates
        {
            int j = _random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        _order = order;
        _orderPosition = 0;
    }

    private StreamPosition Position() => new()
    {
        Pass = _pass,
        RowsIntoPass = _rowsIntoPass,
        RowsPerPass = _rowsPerPass,
        Random = _random.State,
        Buffer = _cached ? _cachedRows! : _slots.Select(s => s.Row).ToArray(),
        Cached = _cached,
        Order = _order,
        OrderPosition = _orderPosition,
        SkippedRows = _skipped,
        FirstSkippedRows = [.. _firstSkipped],
    };

    // A cursor positioned so that its next row is row `row` of the pass.
    private TrainingRowReader OpenAt(long row, CancellationToken cancellationToken)
    {
        var reader = new TrainingRowReader(_data, _image, _condition);
        for (long i = 0; i < row; i++)
        {
            if ((i & 1023) == 0) cancellationToken.ThrowIfCancellationRequested();
            if (!reader.MoveNext())
            {
                reader.Dispose();
                throw new InvalidOperationException($"The training data has {i} rows, fewer than the {row} the training state was written after; resume with the same data.");
            }
        }
        return reader;
    }

    // Re-reads the rows a saved buffer held, so the run continues exactly where the saved one stopped.
    private void Restore(StreamPosition saved, CancellationToken cancellationToken)
    {
        var wanted = new Dictionary<long, List<int>>();
        for (int i = 0; i < saved.Buffer.Length; i++)
        {
            if (!wanted.TryGetValue(saved.Buffer[i], out var slots)) wanted[saved.Buffer[i]] = slots = [];
            slots.Add(i);
            _slots.Add(new Slot(_image.Length) { Row = saved.Buffer[i] });
        }
        long last = saved.Buffer.Max();
        using (var reader = new TrainingRowReader(_data, _image, _condition))
        {
            for (long row = 0; row <= last; row++)
            {
                if ((row & 1023) == 0) cancellationToken.ThrowIfCancellationRequested();
                if (!reader.MoveNext())
                    throw new InvalidOperationException($"The training data has {row} rows, but the training state holds row {last}; resume with the same data.");
                if (!wanted.TryGetValue(row, out var targets)) continue;
                var first = _slots[targets[0]];
                var error = reader.TryRead(first.Pixels, out var condition);
                if (error is not null)
                    throw new InvalidOperationException($"Resuming needs training row {row}, which was readable when the training state was written but is not now.", error);
                first.Condition = condition;
                RowsRead++;
                foreach (int k in targets.Skip(1))
                {
                    first.Pixels.CopyTo(_slots[k].Pixels, 0);
                    _slots[k].Condition = condition;
                }
            }
        }
        if (_cached) _cachedRows = saved.Buffer;
    }

    public void Dispose()
    {
        _reader?.Dispose();
        _reader = null;
    }
}
