using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// Heun's second-order method for the probability-flow ODE (Karras et al. 2022, Algorithm 1 without churn; k-diffusion's
/// <c>sample_heun</c>): an Euler step from σ_i to σ_{i+1}, then a correction with the slope there, averaging the two.
/// The last step, to σ = 0, is plain Euler. As in diffusers' HeunDiscreteScheduler, <see cref="DiffusionSamplerBase.Timesteps"/>
/// lists every network evaluation, so N steps take 2N − 1 evaluations: t₀, then t₁ twice, …, t_{N−1} twice. Deterministic;
/// Karras noise levels by default.
/// </summary>
internal sealed class HeunSampler : DiffusionSamplerBase
{
    private double[] _sigmas = [];
    private Tensor? _start, _slope;

    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public HeunSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Heun;

    /// <inheritdoc/>
    public override bool IsStochastic => false;

    /// <inheritdoc/>
    public override int Order => 2;

    /// <inheritdoc/>
    protected override TimestepSpacing DefaultSpacing => TimestepSpacing.Karras;

    /// <inheritdoc/>
    protected override IReadOnlyList<TimestepSpacing> SupportedSpacings => Enum.GetValues<TimestepSpacing>();

    /// <inheritdoc/>
    protected override bool SupportsKarrasSigmas => true;

    /// <inheritdoc/>
    public override double InitialNoiseScale => _sigmas.Length == 0 ? 1.0 : SigmaInitialNoiseScale(_sigmas[0]);

    /// <inheritdoc/>
    protected override double[] ChooseTimesteps(int inferenceSteps)
    {
        (var levels, _sigmas) = SigmaSteps(inferenceSteps);
        // Level 0 once, every later level twice: its correction of the step that reached it, then its own Euler step.
        return [levels[0], .. levels.Skip(1).SelectMany(t => new[] { t, t })];
    }

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        CheckStepIndex(stepIndex);
        using var scope = NewDisposeScope();
        bool correction = stepIndex % 2 == 1;
        int level = (stepIndex + 1) / 2;
        double sigma = _sigmas[level];
        var (x0, _) = Decompose(modelOutput, sample, NoiseLevels.AlphaCumprodOf(sigma));
        var x = sample * Math.Sqrt(1 + sigma * sigma);
        var slope = (x - x0) / sigma;

        if (correction)
        {
            if (_start is null || _slope is null) throw new InvalidOperationException("Heun's correction step came without its Euler step; take the steps in order from index 0.");
            double from = _sigmas[level - 1];
            var corrected = _start + (_slope + slope) * (0.5 * (sigma - from));
            ResetHistory();
            return Output(corrected / Math.Sqrt(1 + sigma * sigma), x0);
        }

        double next = _sigmas[level + 1];
        var euler = x + slope * (next - sigma);
        if (next > 0)
        {
            ResetHistory();
            _start = x.detach().DetachFromDisposeScope();
            _slope = slope.detach().DetachFromDisposeScope();
        }
        return Output(euler / Math.Sqrt(1 + next * next), x0);
    }

    /// <inheritdoc/>
    protected override void ResetHistory()
    {
        _start?.Dispose();
        _slope?.Dispose();
        (_start, _slope) = (null, null);
    }
}
