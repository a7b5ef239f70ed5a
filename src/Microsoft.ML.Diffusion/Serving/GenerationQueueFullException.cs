namespace Microsoft.ML.Diffusion.Serving;

/// <summary>The service's queue holds <see cref="Capacity"/> waiting requests already; try again later (a web host answers 503).</summary>
public sealed class GenerationQueueFullException : Exception
{
    /// <summary>Creates the exception for a queue of <paramref name="capacity"/> requests.</summary>
    public GenerationQueueFullException(int capacity)
        : base($"The generation queue is full ({capacity} requests are waiting); try again later.") => Capacity = capacity;

    /// <summary>Most requests the queue holds.</summary>
    public int Capacity { get; }
}
