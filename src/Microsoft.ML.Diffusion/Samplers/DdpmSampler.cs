using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): x_{t−1} = μ̃(x_t, x̂₀) + σ_t z with σ_t² = β̃_t
/// (or β_t), and no noise on the last step. With fewer than T steps it strides through the schedule,
/// using the β implied by the two ᾱ it steps between.
/// </summary>
internal sealed class DdpmSampler : DiffusionSamplerBase
{
    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public DdpmSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Ddpm;

    /// <inheritdoc/>
    public override bool IsStochastic => true;

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        int t = TimestepAt(stepIndex);   // validates stepIndex
        int prev = NextTimestep(stepIndex);
        using var scope = NewDisposeScope();

        double alphaCumprod = Schedule.AlphasCumprod[t];
        double alphaCumprodPrev = Schedule.AlphaCumprodAt(prev);
        double beta = 1.0 - alphaCumprod / alphaCumprodPrev;   // β_t when striding by one step
        double oneMinus = 1.0 - alphaCumprod;

        var (x0, _) = Decompose(modelOutput, sample, t);
        double coefX0 = Math.Sqrt(alphaCumprodPrev) * beta / oneMinus;
        double coefXt = Math.Sqrt(1.0 - beta) * (1.0 - alphaCumprodPrev) / oneMinus;
        var mean = coefX0 * x0 + coefXt * sample;

        if (t > 0)
        {
            double variance = Options.UseLargeVariance ? beta : Math.Max((1.0 - alphaCumprodPrev) / oneMinus * beta, 1e-20);
            var z = Noise(sample, noise);
            mean = mean + Math.Sqrt(variance) * z;
        }
        return Output(mean, x0);
    }
}
