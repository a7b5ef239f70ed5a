using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The linear multistep method for the probability-flow ODE in σ (k-diffusion's <c>sample_lms</c>; diffusers'
/// LMSDiscreteScheduler with its default order 4): x_σ' = x_σ + Σ_k c_k d_{i−k}, where d = (x_σ − x̂₀)/σ are the last
/// (up to four) slopes and c_k integrates the Lagrange basis polynomial of σ_{i−k} through those σ from σ_i to σ_{i+1}.
/// Samples are in the schedule's scale as for <see cref="EulerSampler"/>; timesteps, σ and starting noise follow diffusers,
/// linspace spacing by default. Deterministic; one network evaluation per step.
/// </summary>
internal sealed class LmsSampler : NoiseLevelSamplerBase
{
    private const int LmsOrder = 4;
    private readonly List<Tensor> _slopes = [];   // the last slopes, newest last

    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public LmsSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Lms;

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
        _slopes.Add(((x - x0) / sigma).detach().DetachFromDisposeScope());
        if (_slopes.Count > LmsOrder)
        {
            _slopes[0].Dispose();
            _slopes.RemoveAt(0);
        }

        // As diffusers: the polynomial's order counts the steps so far, even when fewer slopes are kept (a run started midway).
        int order = Math.Min(stepIndex + 1, LmsOrder);
        for (int k = 0; k < Math.Min(order, _slopes.Count); k++)
            x = x + Coefficient(order, stepIndex, k) * _slopes[^(k + 1)];
        return Output(x / Math.Sqrt(1 + next * next), x0);
    }

    // ∫ from σ_i to σ_{i+1} of Π_{j < order, j ≠ k} (τ − σ_{i−j}) / (σ_{i−k} − σ_{i−j}) dτ. The integrand is a polynomial of
    // degree order − 1 ≤ 3, which two-point Gauss–Legendre quadrature integrates exactly.
    private double Coefficient(int order, int i, int k)
    {
        double Basis(double tau)
        {
            double product = 1.0;
            for (int j = 0; j < order; j++)
                if (j != k) product *= (tau - Sigmas[i - j]) / (Sigmas[i - k] - Sigmas[i - j]);
            return product;
        }
        double from = Sigmas[i], to = Sigmas[i + 1];
        double middle = 0.5 * (from + to), half = 0.5 * (to - from), node = half / Math.Sqrt(3.0);
        return half * (Basis(middle - node) + Basis(middle + node));
    }

    /// <inheritdoc/>
    protected override void ResetHistory()
    {
        foreach (var slope in _slopes) slope.Dispose();
        _slopes.Clear();
    }
}
