namespace Microsoft.ML.Diffusion.Serving;

/// <summary>How a <see cref="DiffusionGenerationService"/> gathers requests into batches and how many it holds.</summary>
public sealed record GenerationServiceOptions
{
    /// <summary>
    /// How long the worker waits, once a request arrives at an idle service, for more requests to start with it. Requests
    /// that arrive later join the running batch at its next step.
    /// </summary>
    public TimeSpan BatchWindow { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Most requests sampled together; 1 runs them one at a time.</summary>
    public int MaxBatchSize { get; set; } = 16;

    /// <summary>Most requests waiting to start; one more is refused with <see cref="GenerationQueueFullException"/>.</summary>
    public int QueueCapacity { get; set; } = 64;

    /// <summary>
    /// Rows in every network forward; a batch is split into forwards of this size and the last is padded. A fixed size is what
    /// makes a request's image the same bits alone or in any batch: CPU kernels change with the batch size, and each rounds
    /// differently (≈ 1e-5). Null runs the whole batch in one forward: faster for a lone request, but images then equal their
    /// lone runs only up to that rounding. 1 is one forward per row (no gain from batching).
    /// </summary>
    public int? ForwardRows { get; set; } = 4;

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (BatchWindow < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(BatchWindow), BatchWindow, "The batch window cannot be negative.");
        if (MaxBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "The batch size must be positive.");
        if (ForwardRows is < 1) throw new ArgumentOutOfRangeException(nameof(ForwardRows), ForwardRows, "The rows per forward must be positive.");
        if (QueueCapacity < 1) throw new ArgumentOutOfRangeException(nameof(QueueCapacity), QueueCapacity, "The queue capacity must be positive.");
    }
}
