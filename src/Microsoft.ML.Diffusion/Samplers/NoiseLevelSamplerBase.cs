using Microsoft.ML.Diffusion.Schedules;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// What the samplers that step between noise levels σ share (Euler, Euler ancestral, LMS): σ at each of their timesteps
/// (<see cref="DiffusionSamplerBase.SigmaSteps"/>), every spacing and Karras levels, and diffusers' starting noise scale.
/// </summary>
internal abstract class NoiseLevelSamplerBase : DiffusionSamplerBase
{
    protected NoiseLevelSamplerBase(NoiseSchedule schedule, SamplerOptions? options) : base(schedule, options) { }

    /// <summary>σ at each timestep, and 0 after the last; set by <see cref="DiffusionSamplerBase.SetTimesteps"/>.</summary>
    protected double[] Sigmas { get; private set; } = [];

    /// <inheritdoc/>
    protected override TimestepSpacing DefaultSpacing => TimestepSpacing.Linspace;

    /// <inheritdoc/>
    protected override IReadOnlyList<TimestepSpacing> SupportedSpacings => Enum.GetValues<TimestepSpacing>();

    /// <inheritdoc/>
    protected override bool SupportsKarrasSigmas => true;

    /// <inheritdoc/>
    public override double InitialNoiseScale => Sigmas.Length == 0 ? 1.0 : SigmaInitialNoiseScale(Sigmas[0]);

    /// <inheritdoc/>
    protected override double[] ChooseTimesteps(int inferenceSteps)
    {
        (var timesteps, var sigmas) = SigmaSteps(inferenceSteps);
        Sigmas = sigmas;
        return timesteps;
    }
}
