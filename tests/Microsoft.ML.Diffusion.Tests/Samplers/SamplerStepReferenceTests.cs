using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Samplers;

/// <summary>Single sampler steps against the float64 reference (diffusers' conventions).</summary>
public class SamplerStepReferenceTests
{
    [Fact]
    public void DdpmStepMatchesReference()
    {
        var reference = ReferenceData.Root.GetProperty("ddpm_step");
        var shape = ReferenceData.Shape(reference.GetProperty("shape"));
        int checkedCases = 0;
        foreach (var c in reference.GetProperty("cases").EnumerateArray())
        {
            int t = c.GetProperty("t").GetInt32();
            bool clip = c.GetProperty("clip_sample").GetBoolean();
            using var sampler = new DdpmSampler(NoiseSchedule.Linear(), new SamplerOptions { Clipping = clip ? X0Clipping.Clip : X0Clipping.None });
            sampler.SetTimesteps(1000);
            int index = sampler.Timesteps.ToList().IndexOf(t);
            using var sample = tensor(ReferenceData.Floats(c.GetProperty("sample")), shape);
            using var output = tensor(ReferenceData.Floats(c.GetProperty("model_output")), shape);
            using var noise = tensor(ReferenceData.Floats(c.GetProperty("noise")), shape);
            using var prev = sampler.Step(output, index, sample, noise: noise);
            Assertions.Close(ReferenceData.Floats(c.GetProperty("prev_sample")), prev.PreviousSample.data<float>().ToArray(), 1e-4, 1e-5, $"ddpm t={t} clip={clip}");
            checkedCases++;
        }
        Assert.Equal(8, checkedCases);
    }

    [Fact]
    public void DdimStepMatchesReference()
    {
        var reference = ReferenceData.Root.GetProperty("ddim_step");
        var shape = ReferenceData.Shape(reference.GetProperty("shape"));
        int steps = reference.GetProperty("num_inference_steps").GetInt32();
        var expectedTimesteps = reference.GetProperty("timesteps").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        int checkedCases = 0;
        foreach (var c in reference.GetProperty("cases").EnumerateArray())
        {
            int t = c.GetProperty("t").GetInt32();
            double eta = c.GetProperty("eta").GetDouble();
            using var sampler = new DdimSampler(NoiseSchedule.Linear(), new SamplerOptions { Eta = eta, Clipping = X0Clipping.None });
            sampler.SetTimesteps(steps);
            Assert.Equal(expectedTimesteps.Select(t => (double)t), sampler.Timesteps);
            int index = sampler.Timesteps.ToList().IndexOf(t);
            using var sample = tensor(ReferenceData.Floats(c.GetProperty("sample")), shape);
            using var output = tensor(ReferenceData.Floats(c.GetProperty("model_output")), shape);
            using var noise = tensor(ReferenceData.Floats(c.GetProperty("noise")), shape);
            using var prev = sampler.Step(output, index, sample, noise: noise);
            Assertions.Close(ReferenceData.Floats(c.GetProperty("prev_sample")), prev.PreviousSample.data<float>().ToArray(), 1e-4, 1e-5, $"ddim t={t} eta={eta}");
            checkedCases++;
        }
        Assert.Equal(6, checkedCases);
    }

    [Fact]
    public void DpmSolverTimestepsSpanTheWholeSchedule()
    {
        using var sampler = new DpmSolverPlusPlusSampler(NoiseSchedule.Linear());
        sampler.SetTimesteps(20);
        Assert.Equal(20, sampler.Timesteps.Count);
        Assert.Equal(999.0, sampler.Timesteps[0]);
        Assert.Equal(0.0, sampler.Timesteps[^1]);   // the last step goes from t = 0 to σ = 0
        Assert.Equal(sampler.Timesteps.Count, sampler.Timesteps.Distinct().Count());
        Assert.False(sampler.IsStochastic);
    }

    [Fact]
    public void StepBeforeSetTimestepsIsAClearError()
    {
        using var sampler = new DdimSampler(NoiseSchedule.Linear());
        using var x = zeros(1, 1, 2, 2);
        var e = Assert.Throws<InvalidOperationException>(() => sampler.Step(x, 0, x));
        Assert.Contains("SetTimesteps", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.SetTimesteps(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.SetTimesteps(1001));
    }

    [Fact]
    public void ClippingKeepsPredictedSampleInRangeAndTheModelsNoise()
    {
        // At t = 999 an ε of zero means x̂₀ = x_t / √ᾱ, far outside [−1, 1]; clipped, the DDIM (η = 0) step lands
        // on √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·ε̂ with |x̂₀| ≤ 1 and, as in diffusers, the model's ε̂ = 0.
        var schedule = NoiseSchedule.Linear();
        Assert.Equal(Math.Sqrt(schedule.AlphasCumprod[998]), DdimStep(schedule, useClippedModelOutput: false), 4);
    }

    [Fact]
    public void UseClippedModelOutputRecomputesTheNoiseFromTheClippedSample()
    {
        // diffusers' use_clipped_model_output: ε̂ = (x_t − √ᾱ x̂₀) / √(1 − ᾱ) from the clipped x̂₀ = 1.
        var schedule = NoiseSchedule.Linear();
        double a = schedule.AlphasCumprod[999], aPrev = schedule.AlphasCumprod[998];
        double epsHat = (0.5 - Math.Sqrt(a) * 1.0) / Math.Sqrt(1 - a);
        Assert.Equal(Math.Sqrt(aPrev) * 1.0 + Math.Sqrt(1 - aPrev) * epsHat, DdimStep(schedule, useClippedModelOutput: true), 4);
    }

    private static double DdimStep(NoiseSchedule schedule, bool useClippedModelOutput)
    {
        using var sampler = new DdimSampler(schedule, new SamplerOptions { Clipping = X0Clipping.Clip, UseClippedModelOutput = useClippedModelOutput });
        sampler.SetTimesteps(1000);
        using var x = full(1, 1, 2, 2, 0.5f);
        using var eps = zeros(1, 1, 2, 2);
        using var prev = sampler.Step(eps, 0, x);
        return prev.PreviousSample[0, 0, 0, 0].item<float>();
    }
}
