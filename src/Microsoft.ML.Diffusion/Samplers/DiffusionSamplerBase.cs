using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>What every sampler shares: options, timesteps, and turning a model output into x̂₀ and ε̂.</summary>
public abstract class DiffusionSamplerBase : IDiffusionSampler
{
    private int[] _timesteps = Array.Empty<int>();

    /// <summary>Creates a sampler over a schedule.</summary>
    protected DiffusionSamplerBase(NoiseSchedule schedule, SamplerOptions? options)
    {
        Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));
        Options = options ?? new SamplerOptions();
        Options.Validate();
    }

    /// <inheritdoc/>
    public abstract SamplerKind Kind { get; }

    /// <inheritdoc/>
    public NoiseSchedule Schedule { get; }

    /// <inheritdoc/>
    public abstract bool IsStochastic { get; }

    /// <summary>The sampler's settings.</summary>
    public SamplerOptions Options { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Timesteps => _timesteps;

    /// <inheritdoc/>
    public void SetTimesteps(int inferenceSteps)
    {
        if (inferenceSteps < 1 || inferenceSteps > Schedule.Length)
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps, $"The step count must lie in [1, {Schedule.Length}] (the schedule's length).");
        _timesteps = ChooseTimesteps(inferenceSteps);
        ResetHistory();
    }

    /// <inheritdoc/>
    public abstract Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null, Tensor? noise = null);

    /// <summary>The timesteps for a given count, noisiest first.</summary>
    protected abstract int[] ChooseTimesteps(int inferenceSteps);

    /// <summary>Forgets multistep history; called whenever timesteps are set.</summary>
    protected virtual void ResetHistory() { }

    /// <summary>diffusers' "leading" spacing: 0, T/N, 2T/N, … reversed.</summary>
    protected int[] LeadingTimesteps(int inferenceSteps)
    {
        int ratio = Schedule.Length / inferenceSteps;
        return Enumerable.Range(0, inferenceSteps).Select(i => i * ratio).Reverse().ToArray();
    }

    /// <summary>The timestep that follows <c>Timesteps[stepIndex]</c>; −1 past the last (the clean end).</summary>
    protected int NextTimestep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return stepIndex + 1 < _timesteps.Length ? _timesteps[stepIndex + 1] : -1;
    }

    /// <summary>Throws a clear error when no timesteps are set or the index is out of range.</summary>
    protected void CheckStepIndex(int stepIndex)
    {
        if (_timesteps.Length == 0) throw new InvalidOperationException("Call SetTimesteps before Step.");
        if (stepIndex < 0 || stepIndex >= _timesteps.Length)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), stepIndex, $"The step index must lie in [0, {_timesteps.Length}).");
    }

    /// <summary>
    /// x̂₀ (clipped or thresholded as configured) and ε̂ at timestep <paramref name="t"/>. When x̂₀ is
    /// clipped, ε̂ is recomputed from it so that the step stays consistent with the clipped prediction.
    /// </summary>
    protected (Tensor PredictedSample, Tensor PredictedNoise) Decompose(Tensor modelOutput, Tensor sample, int t)
    {
        double alphaCumprod = Schedule.AlphasCumprod[t];
        var x0 = PredictionConverter.ToSample(Options.Prediction, modelOutput, sample, alphaCumprod);
        switch (Options.Clipping)
        {
            case X0Clipping.None:
                var eps = Options.Prediction switch
                {
                    PredictionType.Epsilon => modelOutput.alias(),
                    PredictionType.VPrediction => Math.Sqrt(alphaCumprod) * modelOutput + Math.Sqrt(1 - alphaCumprod) * sample,
                    _ => PredictionConverter.ToNoise(sample, x0, alphaCumprod),
                };
                return (x0, eps);
            case X0Clipping.Clip:
                x0 = x0.clamp(-Options.ClipRange, Options.ClipRange);
                break;
            case X0Clipping.DynamicThreshold:
                x0 = DynamicThreshold(x0);
                break;
        }
        return (x0, PredictionConverter.ToNoise(sample, x0, alphaCumprod));
    }

    // Imagen (Saharia et al. 2022): s = max(1, percentile of |x̂₀|) per sample, capped at ClipRange; clamp to [−s, s] and divide by s.
    private Tensor DynamicThreshold(Tensor x0)
    {
        var flat = x0.reshape(x0.shape[0], -1).abs();
        var s = flat.quantile(Options.ThresholdPercentile, dim: 1, keepdim: false).clamp(1.0, Options.ClipRange);
        var shape = new long[x0.dim()];
        shape[0] = -1;
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        s = s.view(shape);
        return x0.clamp(-s, s) / s;
    }

    /// <summary>The explicit noise if given, else standard normal noise shaped like <paramref name="like"/>.</summary>
    protected static Tensor Noise(Tensor like, Generator? generator, Tensor? noise)
    {
        if (noise is null) return randn(like.shape, dtype: like.dtype, device: like.device, generator: generator);
        if (!noise.shape.SequenceEqual(like.shape))
            throw new ArgumentException($"The noise has shape [{string.Join(", ", noise.shape)}] but the sample has [{string.Join(", ", like.shape)}].", nameof(noise));
        return noise;
    }

    /// <inheritdoc/>
    public virtual void Dispose() => ResetHistory();
}
