using Microsoft.ML.Diffusion.Schedules;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// A schedule's noise levels seen as σ = √((1 − ᾱ)/ᾱ), the form k-diffusion's samplers work in (x_σ = x₀ + σ ε, which is
/// the schedule's x_t times √(1 + σ²)), and the timestep choices built on them.
/// </summary>
internal static class NoiseLevels
{
    /// <summary>σ at whole timestep <paramref name="t"/>.</summary>
    public static double Sigma(NoiseSchedule schedule, int t) => SigmaOf(schedule.AlphasCumprod[t]);

    /// <summary>σ for a given ᾱ.</summary>
    public static double SigmaOf(double alphaCumprod) => Math.Sqrt((1.0 - alphaCumprod) / alphaCumprod);

    /// <summary>ᾱ for a given σ.</summary>
    public static double AlphaCumprodOf(double sigma) => 1.0 / (1.0 + sigma * sigma);

    /// <summary>σ at a (fractional) timestep: log σ interpolated linearly between whole timesteps, the inverse of <see cref="TimestepOf"/>.</summary>
    public static double SigmaAt(NoiseSchedule schedule, double t)
    {
        if (!(t >= 0 && t <= schedule.Length - 1)) throw new ArgumentOutOfRangeException(nameof(t), t, $"The timestep must lie in [0, {schedule.Length - 1}].");
        int low = (int)Math.Floor(t), high = Math.Min(low + 1, schedule.Length - 1);
        double fraction = t - low;
        return Math.Exp((1 - fraction) * Math.Log(Sigma(schedule, low)) + fraction * Math.Log(Sigma(schedule, high)));
    }

    /// <summary>
    /// σ at a (fractional) timestep interpolated linearly in σ between whole timesteps, as diffusers' Euler-family schedulers
    /// do (numpy.interp over the training σ).
    /// </summary>
    public static double SigmaLinearAt(NoiseSchedule schedule, double t)
    {
        if (!(t >= 0 && t <= schedule.Length - 1)) throw new ArgumentOutOfRangeException(nameof(t), t, $"The timestep must lie in [0, {schedule.Length - 1}].");
        int low = (int)Math.Floor(t);
        if (low == schedule.Length - 1) return Sigma(schedule, low);
        double a = Sigma(schedule, low), b = Sigma(schedule, low + 1);
        return (b - a) * (t - low) + a;
    }

    /// <summary>
    /// The (fractional) timestep whose σ is <paramref name="sigma"/>, interpolating log σ linearly between whole
    /// timesteps as diffusers' <c>_sigma_to_t</c> does; clamped to [0, T − 1].
    /// </summary>
    public static double TimestepOf(NoiseSchedule schedule, double sigma)
    {
        double logSigma = Math.Log(sigma);
        int last = schedule.Length - 1;
        if (logSigma <= Math.Log(Sigma(schedule, 0))) return 0;
        if (logSigma >= Math.Log(Sigma(schedule, last))) return last;
        int low = 0, high = last;   // σ grows with t: find the bracketing pair
        while (high - low > 1)
        {
            int mid = (low + high) / 2;
            if (Math.Log(Sigma(schedule, mid)) <= logSigma) low = mid; else high = mid;
        }
        double a = Math.Log(Sigma(schedule, low)), b = Math.Log(Sigma(schedule, high));
        return low + (logSigma - a) / (b - a);
    }

    /// <summary>
    /// Karras et al. (2022, eq. 5) noise levels from the schedule's σ_max (t = T − 1) down to its σ_min (t = 0), with ρ = 7:
    /// σ_i = (σ_max^(1/ρ) + i/(N − 1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ.
    /// </summary>
    public static double[] Karras(NoiseSchedule schedule, int count, double rho = 7.0)
        => Karras(Sigma(schedule, schedule.Length - 1), Sigma(schedule, 0), count, rho);

    /// <summary>Karras et al. (2022, eq. 5) noise levels from <paramref name="sigmaMax"/> down to <paramref name="sigmaMin"/>.</summary>
    public static double[] Karras(double sigmaMax, double sigmaMin, int count, double rho = 7.0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        double max = Math.Pow(sigmaMax, 1 / rho), min = Math.Pow(sigmaMin, 1 / rho);
        if (count == 1) return [Math.Pow(max, rho)];
        return [.. Enumerable.Range(0, count).Select(i => Math.Pow(max + (double)i / (count - 1) * (min - max), rho))];
    }

    /// <summary>
    /// <paramref name="count"/> whole timesteps evenly spaced in log-SNR λ = log(√ᾱ/√(1 − ᾱ)) from T − 1 down to 0, each
    /// rounded to the nearest step and kept strictly decreasing (the DPM-Solver paper's "logSNR" spacing).
    /// </summary>
    public static int[] LogSnrTimesteps(NoiseSchedule schedule, int count)
    {
        int last = schedule.Length - 1;
        if (count == 1) return [last];
        double Lambda(int t) => 0.5 * Math.Log(schedule.AlphasCumprod[t]) - 0.5 * Math.Log(1.0 - schedule.AlphasCumprod[t]);
        double lambdaMin = Lambda(last), lambdaMax = Lambda(0);
        var result = new int[count];
        int t = last;
        for (int i = 0; i < count; i++)
        {
            double target = lambdaMin + (lambdaMax - lambdaMin) * i / (count - 1);
            // λ decreases with t: walk t down until λ(t) passes the target, then take the nearer side.
            while (t > 0 && Lambda(t - 1) <= target) t--;
            if (t > 0 && Math.Abs(Lambda(t - 1) - target) < Math.Abs(Lambda(t) - target)) t--;
            int previous = i == 0 ? int.MaxValue : result[i - 1];
            // Keep timesteps strictly decreasing, while leaving room for the remaining steps.
            result[i] = Math.Max(Math.Min(t, previous - 1), count - 1 - i);
            t = result[i];
        }
        return result;
    }
}
