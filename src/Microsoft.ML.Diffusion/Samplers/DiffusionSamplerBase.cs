using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// What samplers share: options, timesteps and their spacing, and turning a model output into x̂₀ and ε̂.
/// Everything here is public or protected, so samplers outside the library are written the same way as the built-in ones.
/// </summary>
public abstract class DiffusionSamplerBase : IDiffusionSampler
{
    private double[] _timesteps = [];

    /// <summary>Creates a sampler over a schedule; checks that the options' spacing is one this sampler can use.</summary>
    protected DiffusionSamplerBase(NoiseSchedule schedule, SamplerOptions? options)
    {
        Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));
        Options = options ?? new SamplerOptions();
        Options.Validate();
        if (!SupportedSpacings.Contains(Spacing))
            throw new ArgumentException($"The {Name} sampler cannot use {Spacing} timestep spacing; it takes {string.Join(", ", SupportedSpacings)}.", nameof(options));
        if (Options.UseKarrasSigmas && !SupportsKarrasSigmas)
            throw new ArgumentException($"The {Name} sampler has no Karras sigmas (UseKarrasSigmas); Euler, LMS, Euler ancestral, Heun and DPM-Solver++ have.", nameof(options));
    }

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <inheritdoc/>
    public NoiseSchedule Schedule { get; }

    /// <inheritdoc/>
    public abstract bool IsStochastic { get; }

    /// <inheritdoc/>
    public SamplerOptions Options { get; }

    /// <inheritdoc/>
    public IReadOnlyList<double> Timesteps => _timesteps;

    /// <inheritdoc/>
    public virtual double InitialNoiseScale => 1.0;

    /// <inheritdoc/>
    public virtual int Order => 1;

    /// <summary>The spacing used when the options name none.</summary>
    protected virtual TimestepSpacing DefaultSpacing => TimestepSpacing.Leading;

    /// <summary>The spacings this sampler can use (samplers on the schedule's steps cannot use fractional Karras timesteps).</summary>
    protected virtual IReadOnlyList<TimestepSpacing> SupportedSpacings => [TimestepSpacing.Leading, TimestepSpacing.Trailing, TimestepSpacing.Linspace, TimestepSpacing.LogSnr];

    /// <summary>Whether the sampler honours <see cref="SamplerOptions.UseKarrasSigmas"/>.</summary>
    protected virtual bool SupportsKarrasSigmas => false;

    /// <summary>The spacing in effect.</summary>
    public TimestepSpacing Spacing => Options.Spacing ?? DefaultSpacing;

    /// <inheritdoc/>
    public void SetTimesteps(int inferenceSteps)
    {
        if (inferenceSteps < 1 || inferenceSteps > Schedule.Length)
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps, $"The step count must lie in [1, {Schedule.Length}] (the schedule's length).");
        _timesteps = ChooseTimesteps(inferenceSteps);
        ResetHistory();
    }

    /// <inheritdoc/>
    public abstract SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null);

    /// <summary>The network's timesteps for <paramref name="inferenceSteps"/> steps, noisiest first; by default <see cref="SpacedTimesteps"/>.</summary>
    protected virtual double[] ChooseTimesteps(int inferenceSteps) => [.. SpacedTimesteps(inferenceSteps).Select(t => (double)t)];

    /// <summary>Forgets multistep history; called whenever timesteps are set.</summary>
    protected virtual void ResetHistory() { }

    /// <summary>
    /// <paramref name="inferenceSteps"/> distinct whole timesteps, noisiest first, by <see cref="Spacing"/> (which must not be Karras).
    /// </summary>
    protected int[] SpacedTimesteps(int inferenceSteps)
    {
        int steps = Schedule.Length;
        int[] result = Spacing switch
        {
            TimestepSpacing.Leading => [.. Enumerable.Range(0, inferenceSteps).Select(i => i * (steps / inferenceSteps) + Options.StepsOffset).Reverse()],
            TimestepSpacing.Trailing => [.. Enumerable.Range(0, inferenceSteps).Select(i => (int)Math.Round(steps - i * ((double)steps / inferenceSteps)) - 1)],
            TimestepSpacing.Linspace => [.. Enumerable.Range(0, inferenceSteps).Select(i => (int)Math.Round(inferenceSteps == 1 ? 0 : (steps - 1) * (double)i / (inferenceSteps - 1))).Reverse()],
            TimestepSpacing.LogSnr => NoiseLevels.LogSnrTimesteps(Schedule, inferenceSteps),
            _ => throw new InvalidOperationException($"{Spacing} spacing has fractional timesteps; the {Name} sampler needs whole ones."),
        };
        if (result.Any(t => t < 0 || t >= steps))
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps, $"{Spacing} spacing with StepsOffset {Options.StepsOffset} gives timesteps outside [0, {steps}).");
        return result;
    }

    /// <summary>
    /// For samplers that work in σ (<see cref="NoiseLevels"/>): <paramref name="inferenceSteps"/> noise levels, noisiest first, with
    /// their timesteps, and σ = 0 appended to the levels as the clean end, as diffusers' Euler-family schedulers choose them.
    /// Linspace spacing keeps its fractional timesteps and interpolates σ linearly between whole ones; the other spacings give
    /// the σ of their whole timesteps. <see cref="SamplerOptions.UseKarrasSigmas"/> then puts Karras levels between the first and
    /// last of those σ, at fractional timesteps. Karras spacing gives Karras levels over the whole schedule.
    /// </summary>
    protected (double[] Timesteps, double[] Sigmas) SigmaSteps(int inferenceSteps)
    {
        if (Spacing == TimestepSpacing.Karras)
        {
            var karras = NoiseLevels.Karras(Schedule, inferenceSteps);
            return ([.. karras.Select(s => NoiseLevels.TimestepOf(Schedule, s))], [.. karras, 0.0]);
        }
        double[] timesteps = Spacing == TimestepSpacing.Linspace ? FractionalLinspace(inferenceSteps) : [.. SpacedTimesteps(inferenceSteps).Select(t => (double)t)];
        double[] sigmas = [.. timesteps.Select(t => NoiseLevels.SigmaLinearAt(Schedule, t))];
        if (Options.UseKarrasSigmas)
        {
            sigmas = NoiseLevels.Karras(sigmas[0], sigmas[^1], inferenceSteps);
            timesteps = [.. sigmas.Select(s => NoiseLevels.TimestepOf(Schedule, s))];
        }
        return (timesteps, [.. sigmas, 0.0]);
    }

    // numpy.linspace(0, T − 1, N, dtype=float32) reversed: diffusers' σ schedulers keep these timesteps in float32.
    private double[] FractionalLinspace(int inferenceSteps)
    {
        int last = Schedule.Length - 1;
        double step = inferenceSteps == 1 ? 0 : (double)last / (inferenceSteps - 1);
        return [.. Enumerable.Range(0, inferenceSteps).Select(i => i == inferenceSteps - 1 && i > 0 ? last : (double)(float)(i * step)).Reverse()];
    }

    /// <summary>
    /// For samplers that work in σ: the scale of the starting noise that diffusers' Euler-family schedulers give
    /// (<c>init_noise_sigma</c>). With linspace or trailing spacing they start at x_σ = σ_max z, which is √(1 − ᾱ) z in the
    /// schedule's scale; with the others at √(σ_max² + 1) z, which is z.
    /// </summary>
    protected double SigmaInitialNoiseScale(double sigmaMax)
        => Spacing is TimestepSpacing.Linspace or TimestepSpacing.Trailing ? sigmaMax / Math.Sqrt(1 + sigmaMax * sigmaMax) : 1.0;

    /// <summary>The whole timestep at <paramref name="stepIndex"/>; throws a clear error when no timesteps are set or the index is out of range.</summary>
    protected int TimestepAt(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return (int)_timesteps[stepIndex];
    }

    /// <summary>The whole timestep after <c>Timesteps[stepIndex]</c>; −1 past the last (the clean end).</summary>
    protected int NextTimestep(int stepIndex)
    {
        CheckStepIndex(stepIndex);
        return stepIndex + 1 < _timesteps.Length ? (int)_timesteps[stepIndex + 1] : -1;
    }

    /// <summary>Throws a clear error when no timesteps are set or the index is out of range.</summary>
    protected void CheckStepIndex(int stepIndex)
    {
        if (_timesteps.Length == 0) throw new InvalidOperationException("Call SetTimesteps before Step.");
        if (stepIndex < 0 || stepIndex >= _timesteps.Length)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), stepIndex, $"The step index must lie in [0, {_timesteps.Length}).");
    }

    /// <summary>x̂₀ and ε̂ at whole timestep <paramref name="t"/>; see <see cref="Decompose(Tensor, Tensor, double)"/>.</summary>
    protected (Tensor PredictedSample, Tensor PredictedNoise) Decompose(Tensor modelOutput, Tensor sample, int t)
        => Decompose(modelOutput, sample, Schedule.AlphasCumprod[t]);

    /// <summary>
    /// x̂₀ (clipped or thresholded as configured) and ε̂ for a sample x = √ᾱ x₀ + √(1 − ᾱ) ε. ε̂ is the model's own
    /// prediction unless <see cref="SamplerOptions.UseClippedModelOutput"/> asks for it to be recomputed from the kept-in-range x̂₀.
    /// </summary>
    protected (Tensor PredictedSample, Tensor PredictedNoise) Decompose(Tensor modelOutput, Tensor sample, double alphaCumprod)
    {
        var x0 = PredictionConverter.ToSample(Options.Prediction, modelOutput, sample, alphaCumprod);
        var eps = Options.Prediction switch
        {
            PredictionType.Epsilon => modelOutput.alias(),
            PredictionType.VPrediction => Math.Sqrt(alphaCumprod) * modelOutput + Math.Sqrt(1 - alphaCumprod) * sample,
            _ => PredictionConverter.ToNoise(sample, x0, alphaCumprod),
        };
        if (Options.Clipping == X0Clipping.None) return (x0, eps);
        x0 = Options.Clipping == X0Clipping.Clip ? x0.clamp(-Options.ClipRange, Options.ClipRange) : DynamicThreshold(x0);
        return (x0, Options.UseClippedModelOutput ? PredictionConverter.ToNoise(sample, x0, alphaCumprod) : eps);
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

    /// <summary>The given noise, checked against the sample's shape, or standard normal noise from torch's global generator.</summary>
    protected static Tensor Noise(Tensor like, Tensor? noise)
    {
        if (noise is null) return randn(like.shape, dtype: like.dtype, device: like.device);
        if (!noise.shape.SequenceEqual(like.shape))
            throw new ArgumentException($"The noise has shape [{string.Join(", ", noise.shape)}] but the sample has [{string.Join(", ", like.shape)}].", nameof(noise));
        return noise;
    }

    /// <summary>The step's output, moved out of the step's dispose scope to the caller.</summary>
    protected static SamplerStepOutput Output(Tensor previousSample, Tensor predictedOriginal)
        => new(previousSample.MoveToOuterDisposeScope(), predictedOriginal.MoveToOuterDisposeScope());

    /// <inheritdoc/>
    public virtual void Dispose() => ResetHistory();
}
