using Microsoft.ML.Diffusion.Process;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>Settings shared by every sampler: its JSON configuration, saved with a generation stage.</summary>
public sealed record SamplerOptions
{
    /// <summary>What the noise predictor outputs (must match how it was trained).</summary>
    public PredictionType Prediction { get; init; } = PredictionType.Epsilon;

    /// <summary>How x̂₀ is kept in range at each step.</summary>
    public X0Clipping Clipping { get; init; } = X0Clipping.Clip;

    /// <summary>The data range bound for <see cref="X0Clipping.Clip"/> and the cap for dynamic thresholding.</summary>
    public double ClipRange { get; init; } = 1.0;

    /// <summary>The |x̂₀| percentile used by <see cref="X0Clipping.DynamicThreshold"/>.</summary>
    public double ThresholdPercentile { get; init; } = 0.995;

    /// <summary>
    /// DDIM only: after x̂₀ is clipped or thresholded, recompute ε̂ from it (diffusers' <c>use_clipped_model_output</c>).
    /// False keeps the model's own ε̂, as diffusers' pipelines and DDIMScheduler configurations do.
    /// </summary>
    public bool UseClippedModelOutput { get; init; }

    /// <summary>DDIM's η: 0 is deterministic, 1 matches DDPM's ancestral variance.</summary>
    public double Eta { get; init; }

    /// <summary>
    /// DDPM only: use β_t as the reverse variance ("fixed large") instead of β̃_t ("fixed small").
    /// </summary>
    public bool UseLargeVariance { get; init; }

    /// <summary>
    /// DDIM and PNDM: the last step lands on ᾱ = 1, clean data (true, the default), or on ᾱ of the schedule's first step
    /// (false); diffusers' <c>set_alpha_to_one</c>.
    /// </summary>
    public bool SetAlphaToOne { get; init; } = true;

    /// <summary>How the timesteps are chosen; null uses the sampler's own default.</summary>
    public TimestepSpacing? Spacing { get; init; }

    /// <summary>Added to every timestep with <see cref="TimestepSpacing.Leading"/> spacing (diffusers' <c>steps_offset</c>).</summary>
    public int StepsOffset { get; init; }

    /// <summary>
    /// diffusers' <c>use_karras_sigmas</c>, for the samplers that have it (Euler, LMS, Euler ancestral, Heun, DPM-Solver++): Karras
    /// noise levels (ρ = 7) in place of the spaced ones. The σ samplers run them between the σ of the first and last timesteps
    /// <see cref="Spacing"/> picks, at fractional timesteps; DPM-Solver++ over the whole schedule, rounded to whole timesteps.
    /// </summary>
    public bool UseKarrasSigmas { get; init; }

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (!(ClipRange > 0)) throw new ArgumentOutOfRangeException(nameof(ClipRange), ClipRange, "ClipRange must be positive.");
        if (!(ThresholdPercentile > 0 && ThresholdPercentile <= 1)) throw new ArgumentOutOfRangeException(nameof(ThresholdPercentile), ThresholdPercentile, "ThresholdPercentile must lie in (0, 1].");
        if (StepsOffset < 0) throw new ArgumentOutOfRangeException(nameof(StepsOffset), StepsOffset, "StepsOffset must not be negative.");
        if (!(Eta >= 0)) throw new ArgumentOutOfRangeException(nameof(Eta), Eta, "η must be non-negative.");
    }
}
