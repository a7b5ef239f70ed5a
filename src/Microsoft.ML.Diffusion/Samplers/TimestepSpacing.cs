namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>How a sampler picks its N timesteps out of the schedule's T (diffusers' <c>timestep_spacing</c>, and two more).</summary>
public enum TimestepSpacing
{
    /// <summary>0, T/N, 2T/N, … (integer division), plus <see cref="SamplerOptions.StepsOffset"/>; DDPM's and DDIM's default.</summary>
    Leading,
    /// <summary>T−1, T−1−T/N, …: always starts at the noisiest step.</summary>
    Trailing,
    /// <summary>
    /// N steps evenly spaced from T−1 down to 0: rounded for the samplers on whole timesteps; the σ samplers (Euler, LMS, Euler
    /// ancestral, Heun) keep them fractional and interpolate σ, as diffusers' Euler-family schedulers do.
    /// </summary>
    Linspace,
    /// <summary>Evenly spaced in log-SNR λ from T−1 down to 0, rounded; DPM-Solver++'s default.</summary>
    LogSnr,
    /// <summary>
    /// Karras et al. (2022) noise levels σ_i = (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ with ρ = 7, at fractional
    /// timesteps; only for samplers that work in σ (Euler ancestral's and Heun's default).
    /// </summary>
    Karras,
}
