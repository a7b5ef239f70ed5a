using Microsoft.ML.Diffusion.Schedules;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>Creates a sampler by kind, so callers can choose one from configuration.</summary>
public static class DiffusionSamplers
{
    /// <summary>A new sampler of <paramref name="kind"/> over <paramref name="schedule"/>.</summary>
    public static IDiffusionSampler Create(SamplerKind kind, NoiseSchedule schedule, SamplerOptions? options = null) => kind switch
    {
        SamplerKind.Ddpm => new DdpmSampler(schedule, options),
        SamplerKind.Ddim => new DdimSampler(schedule, options),
        SamplerKind.DpmSolverPlusPlus => new DpmSolverPlusPlusSampler(schedule, options),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown sampler kind."),
    };

    /// <summary>The step count each sampler is designed for: DDPM all T steps, DDIM 50, DPM-Solver++ 20.</summary>
    public static int DefaultSteps(SamplerKind kind, NoiseSchedule schedule) => kind switch
    {
        SamplerKind.Ddpm => schedule.Length,
        SamplerKind.Ddim => Math.Min(50, schedule.Length),
        SamplerKind.DpmSolverPlusPlus => Math.Min(20, schedule.Length),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown sampler kind."),
    };
}
