namespace Microsoft.ML.Diffusion.Schedules;

/// <summary>How the per-step noise variances β_t are laid out over the training steps.</summary>
public enum NoiseScheduleKind
{
    /// <summary>β linear from <c>BetaStart</c> to <c>BetaEnd</c> (DDPM paper: 1e-4 → 0.02).</summary>
    Linear,
    /// <summary>√β linear from √<c>BetaStart</c> to √<c>BetaEnd</c>, then squared (latent diffusion).</summary>
    ScaledLinear,
    /// <summary>A sigmoid over [−6, 6] scaled into [<c>BetaStart</c>, <c>BetaEnd</c>].</summary>
    Sigmoid,
    /// <summary>Nichol &amp; Dhariwal's cosine ᾱ schedule (offset s, β capped at <c>MaxBeta</c>).</summary>
    Cosine,
}
