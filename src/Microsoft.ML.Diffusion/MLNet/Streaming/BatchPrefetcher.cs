using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>
/// Runs a <see cref="ShuffledRowStream"/> on a background thread, a bounded number of batches ahead of
/// training, so reading, decoding and resizing (any lazy upstream stage) overlap with the training step.
/// The stream stays single-threaded, so the batches are the same as reading them in line. An error on
/// the producer reaches the trainer on its next <see cref="Take"/>; disposing stops the producer.
/// </summary>
internal sealed class BatchPrefetcher : IDisposable
{
    private readonly ShuffledRowStream _stream;
    private readonly BlockingCollection<(TrainingBatch? Batch, ExceptionDispatchInfo? Error)> _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _producer;
    private bool _disposed;

    public BatchPrefetcher(ShuffledRowStream stream, int depth)
    {
        if (depth < 1) throw new ArgumentOutOfRangeException(nameof(depth), depth, "The prefetch depth must be positive.");
        _stream = stream;
        _queue = new(boundedCapacity: depth);
        _producer = new Thread(Produce) { IsBackground = true, Name = "Diffusion training data" };
        _producer.Start();
    }

    /// <summary>Rows read from the view so far.</summary>
    public long RowsRead => Volatile.Read(ref _rowsRead);
    private long _rowsRead;

    /// <summary>Hands a batch's pixel array back for the producer to fill again (batches are large-object-heap sized).</summary>
    public void Return(float[] pixels) => _stream.ReturnPixels(pixels);

    /// <summary>The next batch, waiting for the producer if it is behind; rethrows the producer's error.</summary>
    public TrainingBatch Take()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (batch, error) = _queue.Take();
        error?.Throw();
        return batch!;
    }

    private void Produce()
    {
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                var batch = _stream.NextBatch(token);
                Volatile.Write(ref _rowsRead, _stream.RowsRead);
                _queue.Add((batch, null), token);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopped by Dispose.
        }
        catch (Exception e)
        {
            // Handed to the trainer; the queue has room or the trainer is gone (then Dispose cancels this add).
            try { _queue.Add((null, ExceptionDispatchInfo.Capture(e)), token); }
            catch (OperationCanceledException) { }
        }
        finally
        {
            _queue.CompleteAdding();   // a Take after the producer has stopped fails instead of waiting forever
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _stop.Cancel();
        _producer.Join();
        _stream.Dispose();
        _queue.Dispose();
        _stop.Dispose();
    }
}
