using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// Euler's method for the probability-flow ODE in σ (Karras et al. 2022, Algorithm 1 without churn; diffusers'
/// EulerDiscreteScheduler, Stable Diffusion 2's scheduler): x_σ' = x_σ + (σ_{i+1} − σ_i) (x_σ − x̂₀)/σ_i in x_σ = x₀ + σ ε,
/// handing back samples in the schedule's scale (x_σ / √(1 + σ²), which is the network's input diffusers'
/// <c>scale_model_input</c> makes). Timesteps, σ and starting noise follow diffusers (<see cref="DiffusionSamplerBase.SigmaSteps"/>),
/// linspace spacing by default. Deterministic; one network evaluation per step.
/// </summary>
internal sealed class EulerSampler : NoiseLevelSamplerBase
{
    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public EulerSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Euler;

    /// <inheritdoc/>
    public override bool IsStochastic => false;

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        CheckStepIndex(stepIndex);
        using var scope = NewDisposeScope();
        double sigma = Sigmas[stepIndex], next = Sigmas[stepIndex + 1];
        var (x0, _) = Decompose(modelOutput, sample, NoiseLevels.AlphaCumprodOf(sigma));
        var x = sample * Math.Sqrt(1 + sigma * sigma);
        var derivative = (x - x0) / sigma;
        x = x + derivative * (next - sigma);
        return Output(x / Math.Sqrt(1 + next * next), x0);
    }
}
