namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>How <c>TrainDiffusion</c> reads its training data.</summary>
public enum TrainingDataLoading
{
    /// <summary>
    /// In memory when the view knows its row count and its images take at most 256 MiB as floats; streamed
    /// otherwise.
    /// </summary>
    Auto,

    /// <summary>
    /// Every image is read into one tensor before the first step; each epoch is a random permutation drawn
    /// from the trainer's generator.
    /// </summary>
    InMemory,

    /// <summary>
    /// Batches are read from row cursors on a background thread while training runs, through a shuffle
    /// buffer of <see cref="DiffusionTrainingOptions.ShuffleBufferSize"/> rows; memory stays bounded
    /// whatever the data's size.
    /// </summary>
    Streaming,
}
