using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), the data-prediction multistep solver of the
/// diffusion ODE. Works in λ = log(α/σ) with α = √ᾱ, σ = √(1 − ᾱ); the first step is first order
/// (no history yet) and the last goes to σ = 0, returning x̂₀. Deterministic: it adds no noise.
/// </summary>
public sealed class DpmSolverPlusPlusSampler : DiffusionSamplerBase
{
    private Tensor? _previousX0;
    private double _previousLambda;

    /// <summary>Creates the solver; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public DpmSolverPlusPlusSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options) { }

    /// <inheritdoc/>
    public override SamplerKind Kind => SamplerKind.DpmSolverPlusPlus;

    /// <inheritdoc/>
    public override bool IsStochastic => false;

    /// <summary>
    /// Timesteps evenly spaced in log-SNR λ from t = T − 1 down to t = 0 (the DPM-Solver paper's
    /// "logSNR" spacing), each rounded to the nearest integer step. diffusers' default stops at
    /// round((T−1)/N) and jumps to σ = 0 from there, which returns E[x₀ | x_t] from a still-noisy x_t
    /// and shrinks fine detail (for N(μ, 0.1²) data at N = 20 it halves the standard deviation);
    /// ending at t = 0 keeps that last jump negligible, and even λ steps keep the solver's error even.
    /// </summary>
    protected override int[] ChooseTimesteps(int inferenceSteps)
    {
        int last = Schedule.Length - 1;
        if (inferenceSteps == 1) return [last];
        double lambdaMin = Lambda(last), lambdaMax = Lambda(0);
        var result = new int[inferenceSteps];
        int t = last;
        for (int i = 0; i < inferenceSteps; i++)
        {
            double target = lambdaMin + (lambdaMax - lambdaMin) * i / (inferenceSteps - 1);
            // λ decreases with t: walk t down until λ(t) passes the target, then take the nearer side.
            while (t > 0 && Lambda(t - 1) <= target) t--;
            if (t > 0 && Math.Abs(Lambda(t - 1) - target) < Math.Abs(Lambda(t) - target)) t--;
            int previous = i == 0 ? int.MaxValue : result[i - 1];
            // Keep timesteps strictly decreasing, while leaving room for the remaining steps.
            result[i] = Math.Max(Math.Min(t, previous - 1), inferenceSteps - 1 - i);
            t = result[i];
        }
        return result;
    }

    /// <inheritdoc/>
    public override Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null, Tensor? noise = null)
    {
        int t = NextTimestep(stepIndex);   // validates stepIndex
        int s = Timesteps[stepIndex];
        using var scope = NewDisposeScope();

        var (x0, _) = Decompose(modelOutput, sample, s);
        double lambdaS = Lambda(s);
        Tensor result;
        if (t < 0)
        {
            // σ_t = 0: the solution at the clean end is the data prediction itself.
            result = x0.alias();
        }
        else
        {
            double alphaT = Math.Sqrt(Schedule.AlphasCumprod[t]);
            double sigmaT = Math.Sqrt(1.0 - Schedule.AlphasCumprod[t]);
            double sigmaS = Math.Sqrt(1.0 - Schedule.AlphasCumprod[s]);
            double h = Lambda(t) - lambdaS;
            double phi = Math.Exp(-h) - 1.0;

            // First order: x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D0.
            result = (sigmaT / sigmaS) * sample - (alphaT * phi) * x0;
            if (_previousX0 is not null)
            {
                // Second order (midpoint): D1 = (x̂₀ − x̂₀_prev) / r0, term −½ α_t (e^{−h} − 1) D1.
                double r0 = (lambdaS - _previousLambda) / h;
                result = result - (0.5 * alphaT * phi / r0) * (x0 - _previousX0);
            }
        }

        _previousX0?.Dispose();
        _previousX0 = x0.detach().DetachFromDisposeScope();
        _previousLambda = lambdaS;
        return result.MoveToOuterDisposeScope();
    }

    private double Lambda(int t)
    {
        double a = Schedule.AlphasCumprod[t];
        return 0.5 * Math.Log(a) - 0.5 * Math.Log(1.0 - a);
    }

    /// <inheritdoc/>
    protected override void ResetHistory()
    {
        _previousX0?.Dispose();
        _previousX0 = null;
    }
}
