namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Training stopped because a row of the training data cannot be read (an image file that is missing or not an image)
/// and <see cref="DiffusionTrainingOptions.SkipBadRows"/> is off. The message names the row and, when one was written,
/// the training state to resume from; <see cref="Problem"/> says the same without the advice to set SkipBadRows, for
/// applications that offer their own way to skip such rows.
/// </summary>
public sealed class UnreadableTrainingRowException : InvalidOperationException
{
    internal UnreadableTrainingRowException(long row, long stepsDone, string? checkpointPath, string problem, Exception inner)
        : base($"{problem} Set SkipBadRows to skip unreadable rows.", inner)
    {
        Row = row;
        StepsDone = stepsDone;
        CheckpointPath = checkpointPath;
        Problem = problem;
    }

    /// <summary>The number of the row that cannot be read.</summary>
    public long Row { get; }

    /// <summary>The training steps done when training stopped.</summary>
    public long StepsDone { get; }

    /// <summary>The training-state file saved at <see cref="StepsDone"/>, or null when none was written.</summary>
    public string? CheckpointPath { get; }

    /// <summary>What went wrong: the step, the row and why it cannot be read, and where the training state is kept.</summary>
    public string Problem { get; }
}
