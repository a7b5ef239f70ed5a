using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// Euler ancestral (k-diffusion's <c>sample_euler_ancestral</c>, η = 1): from noise level σ_i to σ_{i+1}, an Euler step of
/// the probability-flow ODE down to σ_down, then fresh noise of σ_up, with σ_up² = σ_{i+1}² (σ_i² − σ_{i+1}²)/σ_i² and
/// σ_down² = σ_{i+1}² − σ_up². It works in x_σ = x₀ + σ ε and hands back samples in the schedule's scale. Karras noise
/// levels by default; one network evaluation per step. With linspace, leading or trailing spacing it is diffusers'
/// EulerAncestralDiscreteScheduler (timesteps, σ and starting noise as <see cref="DiffusionSamplerBase.SigmaSteps"/> describes).
/// </summary>
internal sealed class EulerAncestralSampler : NoiseLevelSamplerBase
{
    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public EulerAncestralSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.EulerAncestral;

    /// <inheritdoc/>
    public override bool IsStochastic => true;

    /// <inheritdoc/>
    protected override TimestepSpacing DefaultSpacing => TimestepSpacing.Karras;

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        CheckStepIndex(stepIndex);
        using var scope = NewDisposeScope();
        double sigma = Sigmas[stepIndex], next = Sigmas[stepIndex + 1];
        var (x0, _) = Decompose(modelOutput, sample, NoiseLevels.AlphaCumprodOf(sigma));

        double up = Math.Min(next, Math.Sqrt(next * next * (sigma * sigma - next * next) / (sigma * sigma)));
        double down = Math.Sqrt(next * next - up * up);
        var x = sample * Math.Sqrt(1 + sigma * sigma);
        var derivative = (x - x0) / sigma;
        x = x + derivative * (down - sigma);
        if (next > 0) x = x + up * Noise(sample, noise);
        return Output(x / Math.Sqrt(1 + next * next), x0);
    }
}
