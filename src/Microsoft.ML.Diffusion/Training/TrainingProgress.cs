namespace Microsoft.ML.Diffusion.Training;

/// <summary>A progress report from the training loop.</summary>
/// <param name="Step">Training steps completed so far (over all calls).</param>
/// <param name="TotalSteps">Steps this run will reach.</param>
/// <param name="Loss">Mean loss over the steps since the previous report.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="StepsPerSecond">Throughput since the previous report.</param>
public readonly record struct TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double StepsPerSecond)
{
    /// <summary>Training images per second since the previous report.</summary>
    public double ImagesPerSecond { get; init; }

    /// <summary>
    /// The fraction of the time since the previous report that training waited for its next batch (reading,
    /// decoding and resizing not hidden behind the previous step).
    /// </summary>
    public double DataWaitFraction { get; init; }

    /// <summary>Training rows skipped so far as unreadable (when the stage is told to skip them).</summary>
    public long SkippedRows { get; init; }
}
