using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Serving;

/// <summary>
/// Generates images for many callers at once from one model: requests wait in a bounded queue, and a worker thread samples
/// those that share sampler, steps, guidance and size as one batch (one network forward per step for all of them).
/// Thread-safe and independent of any host (ASP.NET Core, a worker service, a desktop app).
/// </summary>
/// <remarks>
/// <para>
/// Each request keeps its own seed, noise generator and sampler, so its image does not depend on the requests it ran with:
/// only the network forward is shared, and it runs in forwards of a fixed size
/// (<see cref="GenerationServiceOptions.ForwardRows"/>), in which a row's output does not depend on the other rows. Requests
/// that arrive while a batch runs join it at its next step; a cancelled request leaves it before the next step.
/// </para>
/// <para>
/// The service does not own the model; dispose the service first. Progress handlers run on the worker thread between
/// steps and should be quick.
/// </para>
/// </remarks>
public sealed class DiffusionGenerationService : IDisposable
{
    private readonly DiffusionModel _model;
    private readonly GenerationServiceOptions _options;
    private readonly object _gate = new();
    private readonly LinkedList<GenerationJob> _queue = new();
    private readonly List<GenerationJob> _active = [];
    private readonly Thread _worker;
    private BatchKey? _activeKey;
    private bool _disposed;

    /// <summary>Starts a service over <paramref name="model"/>, which the caller keeps owning and must outlive the service.</summary>
    public DiffusionGenerationService(DiffusionModel model, GenerationServiceOptions? options = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = (options ?? new GenerationServiceOptions()) with { };
        _options.Validate();
        _worker = new Thread(Run) { IsBackground = true, Name = "Diffusion generation" };
        _worker.Start();
    }

    /// <summary>Hears the number of requests in each step's batch, on the worker thread (for tests and benchmarks).</summary>
    internal Action<int>? OnBatchStep { get; set; }

    /// <summary>Requests waiting to start.</summary>
    public int QueuedCount
    {
        get { lock (_gate) return _queue.Count; }
    }

    /// <summary>
    /// Queues a request and returns the task of its image. Bad settings throw <see cref="ArgumentException"/> at once; a full
    /// queue throws <see cref="GenerationQueueFullException"/>. Cancelling <paramref name="cancellationToken"/> cancels the
    /// task at once, and the request's row leaves its batch before the next step.
    /// </summary>
    /// <param name="request">Seed, settings and condition or prompt.</param>
    /// <param name="progress">Hears (steps done, total) after each step, on the worker thread.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    public Task<GeneratedImage> GenerateAsync(GenerationRequest request, IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (options, key) = Check(request);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<GeneratedImage>(cancellationToken);
        var job = new GenerationJob(request, options, key, request.Condition?.Slice(0, 1), progress);
        lock (_gate)
        {
            if (_disposed || _queue.Count >= _options.QueueCapacity)
            {
                job.Dispose();
                ObjectDisposedException.ThrowIf(_disposed, this);
                throw new GenerationQueueFullException(_options.QueueCapacity);
            }
            job.Node = _queue.AddLast(job);
            Monitor.PulseAll(_gate);
        }
        if (cancellationToken.CanBeCanceled) job.Registration = cancellationToken.Register(() => Cancel(job, cancellationToken));
        return job.Completion.Task;
    }

    // Everything that can be checked without tensors, so a bad request fails its caller rather than the worker.
    private (GenerationOptions Options, BatchKey Key) Check(GenerationRequest request)
    {
        var options = (request.Options ?? throw new ArgumentException("The request has no options.", nameof(request))) with { };
        options.Validate();
        int steps = PipelineSteps.Steps(_model, options);
        if (steps > _model.Schedule.Length)
            throw new ArgumentOutOfRangeException(nameof(request), steps, $"The step count must lie in [1, {_model.Schedule.Length}] (the schedule's length).");
        int height, width;
        if (_model.TakesPrompts)
        {
            if (request.Condition is not null) throw new ArgumentException("This model takes prompts; pass the prompt as text, not as a condition.", nameof(request));
            (height, width) = LatentSize.Of(_model, options);
        }
        else
        {
            if (request.Prompt is not null || request.NegativePrompt is not null)
                throw new ArgumentException("This model takes no prompts; it has no text encoder.", nameof(request));
            if (options.Width is { } w && w != _model.ImageShape[2] || options.Height is { } h && h != _model.ImageShape[1])
                throw new ArgumentException($"This model generates {_model.ImageShape[2]}×{_model.ImageShape[1]} images; Width and Height apply to latent models only.", nameof(request));
            PipelineSteps.CheckCondition(_model, request.Condition, 1);
            (height, width) = ((int)_model.ImageShape[1], (int)_model.ImageShape[2]);
        }
        return (options, new BatchKey(options.Sampler.Value, steps, options.SamplerOptions, options.GuidanceScale, height, width, request.Condition is not null));
    }

    private void Cancel(GenerationJob job, CancellationToken token)
    {
        bool wasQueued;
        lock (_gate)
        {
            wasQueued = job.Node is not null;
            if (wasQueued) Unqueue(job);
        }
        job.Completion.TrySetCanceled(token);
        if (wasQueued) job.Dispose();   // a running job is disposed by the worker when it drops the row
    }

    private void Unqueue(GenerationJob job)
    {
        _queue.Remove(job.Node!);
        job.Node = null;
    }

    private void Run()
    {
        using var inference = inference_mode();
        while (Admit())
        {
            if (_active.Count == 0) continue;
            try
            {
                Step();
            }
            catch (Exception e)
            {
                foreach (var job in _active) job.Completion.TrySetException(e);
            }
            Drop(j => j.Abandoned || j.Finished);
        }
        var disposed = new ObjectDisposedException(nameof(DiffusionGenerationService), "The generation service was disposed before the request finished.");
        foreach (var job in _active) job.Completion.TrySetException(disposed);
        Drop(_ => true);
        GenerationJob[] waiting;
        lock (_gate)
        {
            waiting = [.. _queue];
            foreach (var job in waiting) Unqueue(job);
        }
        foreach (var job in waiting)
        {
            job.Completion.TrySetException(disposed);
            job.Dispose();
        }
    }

    // Takes waiting requests into the batch: a new batch waits up to the window from its oldest request for others like it;
    // a running one takes only those at the front of the queue, so a request of another kind is never passed over for long.
    // False once the service is disposed.
    private bool Admit()
    {
        var started = new List<GenerationJob>();
        lock (_gate)
        {
            if (_active.Count == 0)
            {
                while (_queue.Count == 0 && !_disposed) Monitor.Wait(_gate);
                if (_disposed) return false;
                var first = _queue.First!.Value;
                _activeKey = first.Key;
                long deadline = first.QueuedAt + (long)_options.BatchWindow.TotalMilliseconds;
                while (!_disposed && _queue.Count(j => j.Key == _activeKey) < _options.MaxBatchSize && Environment.TickCount64 < deadline)
                    Monitor.Wait(_gate, TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64)));
                if (_disposed) return false;
                foreach (var job in _queue.Where(j => j.Key == _activeKey).Take(_options.MaxBatchSize).ToArray())
                {
                    Unqueue(job);
                    started.Add(job);
                }
            }
            else
            {
                if (_disposed) return false;
                while (_active.Count + started.Count < _options.MaxBatchSize && _queue.First?.Value is { } next && next.Key == _activeKey)
                {
                    Unqueue(next);
                    started.Add(next);
                }
            }
        }
        foreach (var job in started)
        {
            try
            {
                job.Start(_model);
            }
            catch (Exception e)
            {
                job.Completion.TrySetException(e);
            }
            _active.Add(job);
        }
        Drop(j => j.Abandoned);
        return true;
    }

    private void Drop(Func<GenerationJob, bool> leaves)
    {
        foreach (var job in _active.Where(leaves).ToArray())
        {
            _active.Remove(job);
            job.Dispose();
        }
    }

    // One network forward for every running request's rows, then each request's own sampler step.
    private void Step()
    {
        var jobs = _active.Where(j => !j.Abandoned).ToArray();
        if (jobs.Length == 0) return;
        var key = jobs[0].Key;
        OnBatchStep?.Invoke(jobs.Length);
        using var scope = NewDisposeScope();
        int n = jobs.Length;
        var x = cat(jobs.Select(j => j.Sample!).ToArray(), 0);
        bool whole = jobs.All(j => j.Timestep == Math.Floor(j.Timestep));
        var t = whole
            ? tensor(jobs.Select(j => (long)j.Timestep).ToArray(), device: _model.Device)
            : tensor(jobs.Select(j => (float)j.Timestep).ToArray(), device: _model.Device);
        using var condition = Concat(jobs.Select(j => j.Condition));
        bool guided;
        ConditionBatch? forward;
        if (_model.TakesPrompts)
        {
            guided = key.Guidance != 1.0;
            using var negative = guided ? Concat(jobs.Select(j => j.Negative)) : null;
            forward = guided ? negative!.Concat(condition!) : condition!.Slice(0, n);
        }
        else
        {
            guided = condition is not null && key.Guidance is not (0.0 or 1.0);
            forward = condition is null || key.Guidance == 0.0 ? null
                : guided ? Concat([condition, condition.AllNull()]) : condition.Slice(0, n);
        }
        using (forward)
        {
            if (guided) (x, t) = (cat([x, x], 0), cat([t, t], 0));
            var output = ForwardInFixedChunks(x, t, forward);
            for (int i = 0; i < n; i++)
            {
                var row = output.narrow(0, i, 1);
                Tensor eps;
                if (!guided) eps = row;
                else if (_model.TakesPrompts) { var (neg, pos) = (row, output.narrow(0, n + i, 1)); eps = neg + key.Guidance * (pos - neg); }
                else { var (cond, uncond) = (row, output.narrow(0, n + i, 1)); eps = uncond + key.Guidance * (cond - uncond); }
                try
                {
                    jobs[i].Step(eps);
                    if (jobs[i].Finished) jobs[i].Completion.TrySetResult(jobs[i].Result(_model));
                }
                catch (Exception e)
                {
                    jobs[i].Completion.TrySetException(e);
                }
            }
        }
    }

    // Forwards of exactly ForwardRows rows (the last padded with copies of its last row): a row's output then depends on
    // nothing but its own inputs, whatever the batch holds. Forwards of other sizes take other CPU kernels (on a 2-core
    // x86 CPU: 1, 2–3, 4–15 and 16+ rows round differently), so the size must not follow the load.
    private Tensor ForwardInFixedChunks(Tensor x, Tensor t, ConditionBatch? condition)
    {
        long n = x.shape[0];
        if (_options.ForwardRows is not { } rows) return _model.Network.Forward(x, t, condition);
        var parts = new List<Tensor>();
        for (long start = 0; start < n; start += rows)
        {
            long length = Math.Min(rows, n - start);
            var index = cat([arange(length, dtype: ScalarType.Int64), full(rows - length, length - 1, dtype: ScalarType.Int64)]).to(x.device);
            var (xi, ti) = (x.narrow(0, start, length).index_select(0, index), t.narrow(0, start, length).index_select(0, index));
            using var slice = condition?.Slice(start, length);
            using var ci = slice?.Select(index);
            parts.Add(_model.Network.Forward(xi, ti, ci).narrow(0, 0, length));
        }
        return cat(parts, 0);
    }

    private static ConditionBatch? Concat(IEnumerable<ConditionBatch?> parts)
    {
        ConditionBatch? result = null;
        foreach (var part in parts)
        {
            if (part is null) return null;
            var next = result is null ? part.Slice(0, part.Count) : result.Concat(part);
            result?.Dispose();
            result = next;
        }
        return result;
    }

    /// <summary>Stops the worker after its current step; requests still waiting or running fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            Monitor.PulseAll(_gate);
        }
        if (Thread.CurrentThread != _worker) _worker.Join();
    }
}
