using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>What one sampler step returns (diffusers' <c>SchedulerOutput</c>): the next, less noisy sample and the clean image it predicts.</summary>
public sealed class SamplerStepOutput(Tensor previousSample, Tensor predictedOriginal) : IDisposable
{
    /// <summary>The sample at the next timestep (x_{t−1}).</summary>
    public Tensor PreviousSample { get; } = previousSample;

    /// <summary>The prediction x̂₀ of the clean image made at this step (after clipping or thresholding).</summary>
    public Tensor PredictedOriginal { get; } = predictedOriginal;

    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        PreviousSample.Dispose();
        PredictedOriginal.Dispose();
    }
}
