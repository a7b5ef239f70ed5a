using Microsoft.ML.Diffusion.Training;

namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>
/// A batch of streamed training rows: <see cref="Count"/> images as planar floats in [−1, 1], their
/// conditions (or null), and the stream's position after it, which the trainer records once the batch
/// has been trained on.
/// </summary>
internal sealed record TrainingBatch(float[] Pixels, object?[]? Conditions, int Count, StreamPosition Position);
