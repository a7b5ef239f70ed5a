using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Process;

public class ForwardProcessTests
{
    [Fact]
    public void NoisedSamplesAndVTargetsMatchReference()
    {
        var reference = ReferenceData.Root.GetProperty("forward");
        var shape = ReferenceData.Shape(reference.GetProperty("shape"));
        using var process = new ForwardProcess(NoiseSchedule.Linear());
        using var x0 = tensor(ReferenceData.Floats(reference.GetProperty("x0")), shape);
        using var noise = tensor(ReferenceData.Floats(reference.GetProperty("noise")), shape);

        foreach (var c in reference.GetProperty("cases").EnumerateArray())
        {
            int t = c.GetProperty("t").GetInt32();
            using var ts = full(shape[0], t, dtype: int64);
            using var xt = process.AddNoise(x0, ts, noise);
            using var v = process.Target(PredictionType.VPrediction, x0, noise, ts);
            Assertions.Close(ReferenceData.Floats(c.GetProperty("x_t")), xt.data<float>().ToArray(), 1e-4, 1e-5, $"x_t at t={t}");
            Assertions.Close(ReferenceData.Floats(c.GetProperty("v_target")), v.data<float>().ToArray(), 1e-4, 1e-5, $"v at t={t}");
        }
    }

    [Fact]
    public void EachSampleUsesItsOwnTimestep()
    {
        using var process = new ForwardProcess(NoiseSchedule.Linear());
        using var x0 = ones(2, 1, 2, 2);
        using var noise = zeros(2, 1, 2, 2);
        using var ts = tensor(new long[] { 0, 999 });
        using var xt = process.AddNoise(x0, ts, noise);
        var schedule = NoiseSchedule.Linear();
        Assert.Equal(Math.Sqrt(schedule.AlphasCumprod[0]), xt[0, 0, 0, 0].item<float>(), 5);
        Assert.Equal(Math.Sqrt(schedule.AlphasCumprod[999]), xt[1, 0, 1, 1].item<float>(), 5);
    }

    [Fact]
    public void AtTheLastStepTheMarginalIsStandardNormal()
    {
        // ᾱ_999 ≈ 4e-5, so x_T is N(0, I) to within sampling error whatever x₀ is.
        using var process = new ForwardProcess(NoiseSchedule.Linear());
        var generator = new Generator(7);
        using var x0 = rand([4000, 1, 4, 4], generator: generator) * 2 - 1;
        using var noise = randn([4000, 1, 4, 4], generator: generator);
        using var ts = full(4000, 999, dtype: int64);
        using var xt = process.AddNoise(x0, ts, noise);
        double mean = xt.mean().item<float>(), std = xt.std().item<float>();
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(std, 0.98, 1.02);
        // Fourth moment of a standard normal is 3: a check on the shape, not just the scale.
        double kurtosis = xt.pow(4).mean().item<float>();
        Assert.InRange(kurtosis, 2.85, 3.15);
    }

    [Fact]
    public void TargetsReconstructTheirInputs()
    {
        using var process = new ForwardProcess(NoiseSchedule.Linear());
        var generator = new Generator(3);
        using var x0 = rand([8, 1, 4, 4], generator: generator) * 2 - 1;
        using var noise = randn([8, 1, 4, 4], generator: generator);
        using var ts = randint(0, 1000, [8], generator: generator);
        using var xt = process.AddNoise(x0, ts, noise);
        Assert.True(process.Target(PredictionType.Epsilon, x0, noise, ts).eq(noise).all().item<bool>());
        Assert.True(process.Target(PredictionType.Sample, x0, noise, ts).eq(x0).all().item<bool>());
    }
}
