namespace Microsoft.ML.Diffusion.Schedules;

/// <summary>Everything needed to rebuild a <see cref="NoiseSchedule"/>; saved with every checkpoint.</summary>
public sealed record NoiseScheduleOptions
{
    /// <summary>The schedule's shape.</summary>
    public NoiseScheduleKind Kind { get; init; } = NoiseScheduleKind.Linear;

    /// <summary>Number of diffusion (training) steps T.</summary>
    public int TrainSteps { get; init; } = 1000;

    /// <summary>First β (linear, scaled-linear and sigmoid schedules).</summary>
    public double BetaStart { get; init; } = 1e-4;

    /// <summary>Last β (linear, scaled-linear and sigmoid schedules).</summary>
    public double BetaEnd { get; init; } = 0.02;

    /// <summary>Offset s of the cosine schedule, which keeps β small near t = 0.</summary>
    public double CosineOffset { get; init; } = 0.008;

    /// <summary>Upper bound on β for the cosine schedule (avoids a singularity at t = T).</summary>
    public double MaxBeta { get; init; } = 0.999;

    /// <summary>
    /// Rescales the schedule so that its last step has zero signal-to-noise ratio (Lin et al. 2024, "Common diffusion noise
    /// schedules and sample steps are flawed", Algorithm 1): √ᾱ is shifted and scaled so that √ᾱ at the first step is kept
    /// and √ᾱ at the last step is (almost) 0. Otherwise training never sees pure noise, which sampling starts from. The last
    /// step's ᾱ is 2⁻²⁴ rather than 0 (diffusers' stand-in), so that every sampler's arithmetic stays finite. Pair it with
    /// v-prediction: at zero SNR an ε-prediction says nothing about the image.
    /// </summary>
    public bool ZeroTerminalSnr { get; init; }

    /// <summary>Checks the values and throws an <see cref="ArgumentOutOfRangeException"/> naming the bad one.</summary>
    public void Validate()
    {
        if (TrainSteps < 2) throw new ArgumentOutOfRangeException(nameof(TrainSteps), TrainSteps, "A schedule needs at least 2 steps.");
        if (Kind != NoiseScheduleKind.Cosine)
        {
            if (!(BetaStart > 0 && BetaStart < 1)) throw new ArgumentOutOfRangeException(nameof(BetaStart), BetaStart, "β must lie in (0, 1).");
            if (!(BetaEnd > 0 && BetaEnd < 1)) throw new ArgumentOutOfRangeException(nameof(BetaEnd), BetaEnd, "β must lie in (0, 1).");
            if (BetaEnd < BetaStart) throw new ArgumentOutOfRangeException(nameof(BetaEnd), BetaEnd, "BetaEnd must not be below BetaStart.");
        }
        else
        {
            if (!(CosineOffset >= 0)) throw new ArgumentOutOfRangeException(nameof(CosineOffset), CosineOffset, "The cosine offset must be non-negative.");
            if (!(MaxBeta > 0 && MaxBeta < 1)) throw new ArgumentOutOfRangeException(nameof(MaxBeta), MaxBeta, "MaxBeta must lie in (0, 1).");
        }
    }
}
