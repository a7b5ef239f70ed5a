using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Process;

/// <summary>
/// The forward (diffusion) process q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I) in closed form, and the
/// training targets built from it. Holds √ᾱ and √(1 − ᾱ) as float32 tensors on one device so a batch
/// with a different t per sample needs one gather, not a host round trip.
/// </summary>
internal sealed class ForwardProcess : IDisposable
{
    private readonly Tensor _sqrtAlphaCumprod;
    private readonly Tensor _sqrtOneMinusAlphaCumprod;

    /// <summary>Creates the process for a schedule on a device.</summary>
    public ForwardProcess(NoiseSchedule schedule, Device? device = null)
    {
        Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));
        device ??= CPU;
        _sqrtAlphaCumprod = tensor(schedule.AlphasCumprod.Select(Math.Sqrt).ToArray(), dtype: float32, device: device).DetachFromDisposeScope();
        _sqrtOneMinusAlphaCumprod = tensor(schedule.AlphasCumprod.Select(a => Math.Sqrt(1.0 - a)).ToArray(), dtype: float32, device: device).DetachFromDisposeScope();
    }

    /// <summary>The schedule that defines ᾱ_t.</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>
    /// q_sample: x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, with one timestep per batch element.
    /// </summary>
    /// <param name="x0">Clean samples (N, …).</param>
    /// <param name="timesteps">Integer timesteps (N), each in [0, T).</param>
    /// <param name="noise">Standard normal noise shaped like <paramref name="x0"/>.</param>
    public Tensor AddNoise(Tensor x0, Tensor timesteps, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var (a, s) = Coefficients(timesteps, x0.dim());
        return (a * x0 + s * noise).MoveToOuterDisposeScope();
    }

    /// <summary>The regression target for <paramref name="prediction"/> given x₀, ε and t.</summary>
    public Tensor Target(PredictionType prediction, Tensor x0, Tensor noise, Tensor timesteps)
    {
        switch (prediction)
        {
            case PredictionType.Epsilon: return noise.alias();
            case PredictionType.Sample: return x0.alias();
            case PredictionType.VPrediction:
                using (var scope = NewDisposeScope())
                {
                    var (a, s) = Coefficients(timesteps, x0.dim());
                    return (a * noise - s * x0).MoveToOuterDisposeScope();
                }
            default: throw new ArgumentOutOfRangeException(nameof(prediction), prediction, "Unknown prediction type.");
        }
    }

    // √ᾱ_t and √(1 − ᾱ_t) gathered per sample and shaped (N, 1, 1, …) to broadcast over the sample.
    private (Tensor a, Tensor s) Coefficients(Tensor timesteps, long sampleDims)
    {
        var t = timesteps.to_type(int64);
        var shape = new long[sampleDims];
        shape[0] = -1;
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        return (_sqrtAlphaCumprod.index_select(0, t).view(shape), _sqrtOneMinusAlphaCumprod.index_select(0, t).view(shape));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _sqrtAlphaCumprod.Dispose();
        _sqrtOneMinusAlphaCumprod.Dispose();
    }
}
