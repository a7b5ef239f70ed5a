using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Process;

/// <summary>
/// Turns a model output of any <see cref="PredictionType"/> at a single timestep into the two
/// quantities every sampler works with: the predicted clean sample x̂₀ and the predicted noise ε̂.
/// </summary>
internal static class PredictionConverter
{
    /// <summary>x̂₀ from the model output at a step whose ᾱ is <paramref name="alphaCumprod"/>.</summary>
    public static Tensor ToSample(PredictionType prediction, Tensor modelOutput, Tensor sample, double alphaCumprod)
    {
        double a = Math.Sqrt(alphaCumprod), s = Math.Sqrt(1.0 - alphaCumprod);
        return prediction switch
        {
            PredictionType.Epsilon => (sample - s * modelOutput) / a,
            PredictionType.Sample => modelOutput.alias(),
            PredictionType.VPrediction => a * sample - s * modelOutput,
            _ => throw new ArgumentOutOfRangeException(nameof(prediction), prediction, "Unknown prediction type."),
        };
    }

    /// <summary>ε̂ implied by x_t and a (possibly clipped) x̂₀: ε̂ = (x_t − √ᾱ x̂₀) / √(1 − ᾱ).</summary>
    public static Tensor ToNoise(Tensor sample, Tensor predictedSample, double alphaCumprod)
        => (sample - Math.Sqrt(alphaCumprod) * predictedSample) / Math.Sqrt(1.0 - alphaCumprod);
}
