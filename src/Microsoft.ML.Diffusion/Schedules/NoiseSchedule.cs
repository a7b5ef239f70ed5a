namespace Microsoft.ML.Diffusion.Schedules;

/// <summary>
/// The precomputed quantities of a noise schedule, in float64 (pure math, no tensors). Timesteps are
/// 0-based: t = 0 is the least noisy step and t = T − 1 the noisiest.
/// </summary>
public sealed class NoiseSchedule
{
    private NoiseSchedule(NoiseScheduleOptions options, double[] betas)
    {
        Options = options;
        int n = betas.Length;
        Betas = betas;
        Alphas = new double[n];
        AlphasCumprod = new double[n];
        AlphasCumprodPrev = new double[n];
        PosteriorVariance = new double[n];
        PosteriorMeanCoefX0 = new double[n];
        PosteriorMeanCoefXt = new double[n];

        double cumprod = 1.0;
        for (int t = 0; t < n; t++)
        {
            Alphas[t] = 1.0 - betas[t];
            AlphasCumprodPrev[t] = cumprod;
            cumprod *= Alphas[t];
            AlphasCumprod[t] = cumprod;
        }

        for (int t = 0; t < n; t++)
        {
            // q(x_{t-1} | x_t, x_0) = N(coefX0·x_0 + coefXt·x_t, β̃_t), with ᾱ_{-1} = 1 (DDPM eq. 6–7).
            double oneMinusCum = 1.0 - AlphasCumprod[t];
            PosteriorVariance[t] = Betas[t] * (1.0 - AlphasCumprodPrev[t]) / oneMinusCum;
            PosteriorMeanCoefX0[t] = Betas[t] * Math.Sqrt(AlphasCumprodPrev[t]) / oneMinusCum;
            PosteriorMeanCoefXt[t] = (1.0 - AlphasCumprodPrev[t]) * Math.Sqrt(Alphas[t]) / oneMinusCum;
        }
    }

    /// <summary>The options this schedule was built from.</summary>
    public NoiseScheduleOptions Options { get; }

    /// <summary>Number of diffusion steps T.</summary>
    public int Length => Betas.Length;

    /// <summary>β_t, the variance of the noise added at step t.</summary>
    public double[] Betas { get; }

    /// <summary>α_t = 1 − β_t.</summary>
    public double[] Alphas { get; }

    /// <summary>ᾱ_t = ∏_{s ≤ t} α_s: the signal kept after t + 1 steps.</summary>
    public double[] AlphasCumprod { get; }

    /// <summary>ᾱ_{t−1}, with ᾱ_{−1} = 1.</summary>
    public double[] AlphasCumprodPrev { get; }

    /// <summary>β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t): the "fixed small" reverse-process variance.</summary>
    public double[] PosteriorVariance { get; }

    /// <summary>Coefficient of x₀ in the posterior mean μ̃_t(x_t, x₀).</summary>
    public double[] PosteriorMeanCoefX0 { get; }

    /// <summary>Coefficient of x_t in the posterior mean μ̃_t(x_t, x₀).</summary>
    public double[] PosteriorMeanCoefXt { get; }

    /// <summary>ᾱ at timestep <paramref name="t"/>, or 1 for t &lt; 0 (the clean end of the chain).</summary>
    public double AlphaCumprodAt(int t) => t < 0 ? 1.0 : AlphasCumprod[t];

    /// <summary>Builds the schedule the options describe.</summary>
    public static NoiseSchedule Create(NoiseScheduleOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var betas = ComputeBetas(options);
        return new NoiseSchedule(options, options.ZeroTerminalSnr ? RescaleToZeroTerminalSnr(betas) : betas);
    }

    /// <summary>The DDPM paper's schedule: linear β from 1e-4 to 0.02 over <paramref name="trainSteps"/> steps.</summary>
    public static NoiseSchedule Linear(int trainSteps = 1000) => Create(new NoiseScheduleOptions { TrainSteps = trainSteps });

    private static double[] ComputeBetas(NoiseScheduleOptions o)
    {
        int n = o.TrainSteps;
        var betas = new double[n];
        switch (o.Kind)
        {
            case NoiseScheduleKind.Linear:
                for (int i = 0; i < n; i++) betas[i] = Lerp(o.BetaStart, o.BetaEnd, i, n);
                break;
            case NoiseScheduleKind.ScaledLinear:
                double a = Math.Sqrt(o.BetaStart), b = Math.Sqrt(o.BetaEnd);
                for (int i = 0; i < n; i++) { double r = Lerp(a, b, i, n); betas[i] = r * r; }
                break;
            case NoiseScheduleKind.Sigmoid:
                for (int i = 0; i < n; i++)
                {
                    double x = Lerp(-6.0, 6.0, i, n);
                    betas[i] = 1.0 / (1.0 + Math.Exp(-x)) * (o.BetaEnd - o.BetaStart) + o.BetaStart;
                }
                break;
            case NoiseScheduleKind.Cosine:
                // β_t = 1 − ᾱ(t+1)/ᾱ(t) with ᾱ(τ) = cos²(((τ/T) + s)/(1 + s) · π/2), capped (Nichol & Dhariwal 2021).
                double AlphaBar(double tau) { double c = Math.Cos((tau + o.CosineOffset) / (1 + o.CosineOffset) * Math.PI / 2); return c * c; }
                for (int i = 0; i < n; i++)
                    betas[i] = Math.Min(1.0 - AlphaBar((i + 1.0) / n) / AlphaBar((double)i / n), o.MaxBeta);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(o.Kind), o.Kind, "Unknown noise schedule kind.");
        }
        return betas;
    }

    /// <summary>ᾱ at the last step of a rescaled schedule: 2⁻²⁴ (diffusers' stand-in for 0), so √ᾱ = 2⁻¹² stays finite to divide by.</summary>
    internal const double TerminalAlphaCumprod = 1.0 / (1 << 24);

    // Lin et al. 2024, Algorithm 1, in float64, with the end point at √(2⁻²⁴) instead of 0: √ᾱ_t is mapped affinely so that
    // √ᾱ_0 keeps its value and √ᾱ_T becomes 2⁻¹². The map is increasing, so ᾱ keeps falling strictly and every β stays in (0, 1).
    private static double[] RescaleToZeroTerminalSnr(double[] betas)
    {
        int n = betas.Length;
        var sqrtAlphaBar = new double[n];
        double cumprod = 1.0;
        for (int t = 0; t < n; t++) { cumprod *= 1.0 - betas[t]; sqrtAlphaBar[t] = Math.Sqrt(cumprod); }
        double first = sqrtAlphaBar[0], last = sqrtAlphaBar[n - 1], end = Math.Sqrt(TerminalAlphaCumprod);
        var alphaBar = new double[n];
        for (int t = 0; t < n; t++)
        {
            double s = end + (sqrtAlphaBar[t] - last) * (first - end) / (first - last);
            alphaBar[t] = s * s;
        }
        var result = new double[n];
        for (int t = 0; t < n; t++) result[t] = 1.0 - alphaBar[t] / (t == 0 ? 1.0 : alphaBar[t - 1]);
        return result;
    }

    // numpy.linspace's formula, so the values agree with the reference to the last bits.
    private static double Lerp(double start, double end, int i, int n)
        => i == n - 1 ? end : start + i * ((end - start) / (n - 1));
}
