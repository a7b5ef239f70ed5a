using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Samplers;

/// <summary>
/// For data x₀ ~ N(μ, s²) per pixel, the optimal noise predictor has a closed form:
/// E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ). Driving each sampler with it must give samples whose
/// per-pixel mean and standard deviation are μ and s.
/// </summary>
public class GaussianSamplerTests
{
    private const int SampleCount = 4000;
    private static readonly float[] Means = [-0.6f, -0.2f, 0.0f, 0.3f, 0.5f, 0.8f, -0.4f, 0.1f];
    private static readonly float[] Stds = [0.1f, 0.3f, 0.5f, 0.2f, 0.25f, 0.15f, 0.4f, 0.05f];

    // ᾱ at the network's timestep: whole timesteps index the schedule; fractional ones (Karras levels) interpolate log σ.
    private static double AlphaCumprod(NoiseSchedule schedule, Tensor t)
    {
        if (t.dtype == ScalarType.Int64) return schedule.AlphasCumprod[t[0].item<long>()];
        double value = t[0].item<float>();
        int low = (int)Math.Floor(value), high = Math.Min(low + 1, schedule.Length - 1);
        double logSigma = Math.Log(NoiseLevels.Sigma(schedule, low)) + (value - low) * (Math.Log(NoiseLevels.Sigma(schedule, high)) - Math.Log(NoiseLevels.Sigma(schedule, low)));
        return NoiseLevels.AlphaCumprodOf(Math.Exp(logSigma));
    }

    private static Denoiser ExactGaussianDenoiser(NoiseSchedule schedule, Tensor mu, Tensor s2)
        => (x, t) =>
        {
            double a = AlphaCumprod(schedule, t);
            return Math.Sqrt(1 - a) * (x - Math.Sqrt(a) * mu) / (a * s2 + (1 - a));
        };

    [Theory]
    [InlineData("ddpm", 1000, 0.0)]
    [InlineData("ddim", 50, 0.0)]
    [InlineData("dpm-solver++", 20, 0.0)]
    // First-order Euler ancestral needs many steps for this bound (at 30 its standard deviations are ≈ 0.8 of the data's);
    // Heun on Karras levels overshoots by ≈ 10 % at 15 steps and matches at 50.
    [InlineData("euler-ancestral", 200, 0.0)]
    [InlineData("heun", 50, 0.0)]
    [InlineData("pndm", 50, 0.0)]
    [InlineData("euler", 100, 0.0)]
    [InlineData("lms", 50, 0.0)]
    public void SamplesMatchTheDataDistribution(string kind, int steps, double eta)
    {
        var schedule = NoiseSchedule.Linear();
        using var mu = tensor(Means).view(1, 1, 2, 4);
        using var std = tensor(Stds).view(1, 1, 2, 4);
        using var s2 = std.pow(2);
        using var sampler = DiffusionSamplers.Create(kind, schedule, new SamplerOptions { Clipping = X0Clipping.None, Eta = eta });
        using var noiseSource = NoiseSource.FromSeed(1234);
        using var initial = noiseSource.Next([SampleCount, 1, 2, 4], CPU);

        using var samples = SamplingLoop.Run(ExactGaussianDenoiser(schedule, mu, s2), sampler, initial, steps, noiseSource);

        var mean = samples.mean([0]).data<float>().ToArray();
        var sd = samples.std([0]).data<float>().ToArray();
        for (int i = 0; i < Means.Length; i++)
        {
            // Standard error of the mean is s/√4000 ≤ 0.008; of the std ≤ 0.006.
            Assert.True(Math.Abs(mean[i] - Means[i]) < 0.03, $"{kind}: pixel {i} mean {mean[i]:F4}, expected {Means[i]}");
            Assert.True(Math.Abs(sd[i] - Stds[i]) < 0.03 + 0.05 * Stds[i], $"{kind}: pixel {i} std {sd[i]:F4}, expected {Stds[i]}");
        }
    }

    [Theory]
    [InlineData(PredictionType.VPrediction, "ddim")]
    [InlineData(PredictionType.Sample, "ddim")]
    [InlineData(PredictionType.VPrediction, "dpm-solver++")]
    [InlineData(PredictionType.Sample, "ddpm")]
    [InlineData(PredictionType.VPrediction, "heun")]
    [InlineData(PredictionType.Sample, "euler-ancestral")]
    [InlineData(PredictionType.VPrediction, "pndm")]
    [InlineData(PredictionType.Sample, "euler")]
    [InlineData(PredictionType.VPrediction, "lms")]
    public void OtherPredictionTypesSampleTheSameDistribution(PredictionType prediction, string kind)
    {
        // The exact v and x₀ predictors follow from the ε one: x̂₀ = (x − √(1−ᾱ) ε̂)/√ᾱ, v̂ = √ᾱ ε̂ − √(1−ᾱ) x̂₀.
        var schedule = NoiseSchedule.Linear();
        using var mu = tensor(Means).view(1, 1, 2, 4);
        using var std = tensor(Stds).view(1, 1, 2, 4);
        using var s2 = std.pow(2);
        var epsilon = ExactGaussianDenoiser(schedule, mu, s2);
        Denoiser denoiser = (x, t) =>
        {
            double a = AlphaCumprod(schedule, t);
            var eps = epsilon(x, t);
            var x0 = (x - Math.Sqrt(1 - a) * eps) / Math.Sqrt(a);
            return prediction == PredictionType.Sample ? x0 : Math.Sqrt(a) * eps - Math.Sqrt(1 - a) * x0;
        };
        using var sampler = DiffusionSamplers.Create(kind, schedule, new SamplerOptions { Prediction = prediction, Clipping = X0Clipping.None });
        using var noiseSource = NoiseSource.FromSeed(99);
        using var initial = noiseSource.Next([SampleCount, 1, 2, 4], CPU);
        int steps = kind switch { DiffusionSamplers.EulerAncestral => 200, DiffusionSamplers.Heun => 50, DiffusionSamplers.Euler => 100, _ => DiffusionSamplers.DefaultSteps(kind, schedule) };
        using var samples = SamplingLoop.Run(denoiser, sampler, initial, steps, noiseSource);

        var mean = samples.mean([0]).data<float>().ToArray();
        var sd = samples.std([0]).data<float>().ToArray();
        for (int i = 0; i < Means.Length; i++)
        {
            Assert.True(Math.Abs(mean[i] - Means[i]) < 0.03, $"{prediction}/{kind}: pixel {i} mean {mean[i]:F4}, expected {Means[i]}");
            Assert.True(Math.Abs(sd[i] - Stds[i]) < 0.03 + 0.05 * Stds[i], $"{prediction}/{kind}: pixel {i} std {sd[i]:F4}, expected {Stds[i]}");
        }
    }

    [Fact]
    public void StochasticSamplerWithoutNoiseSourceIsAClearError()
    {
        var schedule = NoiseSchedule.Linear();
        using var sampler = new DdpmSampler(schedule);
        using var x = zeros(1, 1, 2, 2);
        var e = Assert.Throws<ArgumentException>(() => SamplingLoop.Run((s, t) => zeros_like(s), sampler, x, 10));
        Assert.Contains("noise source", e.Message);
    }

    [Fact]
    public void CancellationStopsBetweenSteps()
    {
        var schedule = NoiseSchedule.Linear();
        using var sampler = new DdimSampler(schedule);
        using var x = zeros(1, 1, 2, 2);
        using var cts = new CancellationTokenSource();
        int calls = 0;
        Assert.Throws<OperationCanceledException>(() => SamplingLoop.Run((s, t) => { if (++calls == 3) cts.Cancel(); return zeros_like(s); },
            sampler, x, 10, cancellationToken: cts.Token));
        Assert.Equal(3, calls);
    }
}
