using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Process;

/// <summary>Per-timestep loss weights of Min-SNR-γ (Hang et al. 2023), expressed for each regression target.</summary>
internal static class LossWeighting
{
    /// <summary>The weight of a sample at signal-to-noise ratio <paramref name="snr"/> = ᾱ / (1 − ᾱ).</summary>
    public static double MinSnr(PredictionType prediction, double snr, double gamma)
    {
        double clipped = Math.Min(snr, gamma);
        return prediction switch
        {
            // Hang et al. derive the weight for x₀; ε and v losses are x₀ losses scaled by SNR and SNR + 1.
            PredictionType.Sample => clipped,
            PredictionType.Epsilon => clipped / snr,
            PredictionType.VPrediction => clipped / (snr + 1),
            _ => throw new ArgumentOutOfRangeException(nameof(prediction), prediction, "Unknown prediction type."),
        };
    }

    /// <summary>The weights of every timestep of <paramref name="schedule"/>, as a float32 tensor (T) on <paramref name="device"/>.</summary>
    public static Tensor MinSnrTable(NoiseSchedule schedule, PredictionType prediction, double gamma, Device device)
        => tensor(schedule.AlphasCumprod.Select(a => MinSnr(prediction, a / (1.0 - a), gamma)).ToArray(), dtype: float32, device: device);
}
