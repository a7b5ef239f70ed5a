using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// DDIM (Song et al. 2021, eq. 12): x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z, with
/// σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev). Deterministic at η = 0; any number of steps.
/// </summary>
internal sealed class DdimSampler : DiffusionSamplerBase
{
    /// <summary>Creates the sampler; η comes from <see cref="SamplerOptions.Eta"/>.</summary>
    public DdimSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Ddim;

    /// <inheritdoc/>
    public override bool IsStochastic => Options.Eta > 0;

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        int t = TimestepAt(stepIndex);   // validates stepIndex
        int prev = NextTimestep(stepIndex);
        using var scope = NewDisposeScope();

        double alphaCumprod = Schedule.AlphasCumprod[t];
        // Past the last step: ᾱ = 1, or ᾱ_0 without SetAlphaToOne.
        double alphaCumprodPrev = prev < 0 && !Options.SetAlphaToOne ? Schedule.AlphasCumprod[0] : Schedule.AlphaCumprodAt(prev);
        var (x0, eps) = Decompose(modelOutput, sample, t);

        double variance = (1.0 - alphaCumprodPrev) / (1.0 - alphaCumprod) * (1.0 - alphaCumprod / alphaCumprodPrev);
        double sigma = Options.Eta * Math.Sqrt(Math.Max(variance, 0.0));
        double direction = Math.Sqrt(Math.Max(1.0 - alphaCumprodPrev - sigma * sigma, 0.0));

        var prevSample = Math.Sqrt(alphaCumprodPrev) * x0 + direction * eps;
        if (sigma > 0)
            prevSample = prevSample + sigma * Noise(sample, noise);
        return Output(prevSample, x0);
    }
}
