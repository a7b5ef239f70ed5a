using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Samplers;

/// <summary>The sampler contract: spacings as diffusers defines them, Karras levels, the registry, and a sampler added from outside.</summary>
public class SamplerContractTests
{
    private static double[] Timesteps(SamplerName name, TimestepSpacing? spacing, int steps, int offset = 0)
    {
        using var sampler = DiffusionSamplers.Create(name, NoiseSchedule.Linear(), new SamplerOptions { Spacing = spacing, StepsOffset = offset });
        sampler.SetTimesteps(steps);
        return [.. sampler.Timesteps];
    }

    [Fact]
    public void SpacingsMatchDiffusersTimestepSpacing()
    {
        // diffusers: leading (arange(N) * (T // N))[::-1] + steps_offset; trailing round(arange(T, 0, -T/N)) − 1; linspace round(linspace(0, T−1, N))[::-1].
        Assert.Equal([900.0, 800, 700, 600, 500, 400, 300, 200, 100, 0], Timesteps(SamplerName.Ddim, TimestepSpacing.Leading, 10));
        Assert.Equal([901.0, 801, 701, 601, 501, 401, 301, 201, 101, 1], Timesteps(SamplerName.Ddim, TimestepSpacing.Leading, 10, offset: 1));
        Assert.Equal([999.0, 899, 799, 699, 599, 499, 399, 299, 199, 99], Timesteps(SamplerName.Ddpm, TimestepSpacing.Trailing, 10));
        Assert.Equal([999.0, 888, 777, 666, 555, 444, 333, 222, 111, 0], Timesteps(SamplerName.Ddim, TimestepSpacing.Linspace, 10));
        // DPM-Solver++ follows diffusers' multistep scheduler: N + 1 points, the last (t = 0) dropped; it then steps to t = 0.
        Assert.Equal([999.0, 749, 500, 250], Timesteps(SamplerName.DpmSolverPlusPlus, TimestepSpacing.Linspace, 4));
        Assert.Equal([800.0, 600, 400, 200], Timesteps(SamplerName.DpmSolverPlusPlus, TimestepSpacing.Leading, 4));
    }

    [Fact]
    public void KarrasLevelsRunFromSigmaMaxToSigmaMinWithRhoSeven()
    {
        var schedule = NoiseSchedule.Linear();
        var sigmas = NoiseLevels.Karras(schedule, 10);
        Assert.Equal(NoiseLevels.Sigma(schedule, 999), sigmas[0], 9);
        Assert.Equal(NoiseLevels.Sigma(schedule, 0), sigmas[^1], 9);
        double max = Math.Pow(sigmas[0], 1 / 7.0), min = Math.Pow(sigmas[^1], 1 / 7.0);
        Assert.Equal(Math.Pow(max + 4 / 9.0 * (min - max), 7), sigmas[4], 9);
        foreach (int t in new[] { 0, 1, 17, 500, 998, 999 }) Assert.Equal(t, NoiseLevels.TimestepOf(schedule, NoiseLevels.Sigma(schedule, t)), 6);

        var karras = Timesteps(SamplerName.EulerAncestral, null, 10);
        Assert.Equal(999.0, karras[0], 6);
        Assert.Equal(0.0, karras[^1], 6);
        Assert.Contains(karras, t => t != Math.Floor(t));   // fractional in between
    }

    [Fact]
    public void HeunEvaluatesTwiceAtEveryLevelButTheFirst()
    {
        var t = Timesteps(SamplerName.Heun, TimestepSpacing.Leading, 4);
        Assert.Equal([750.0, 500, 500, 250, 250, 0, 0], t);
    }

    [Fact]
    public void PndmEvaluatesItsSecondTimestepTwice()
    {
        // diffusers' PNDMScheduler with skip_prk_steps: the second timestep is evaluated twice (its warm-up), N + 1 in all.
        Assert.Equal([901.0, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1], Timesteps(SamplerName.Pndm, TimestepSpacing.Leading, 10, offset: 1));
        Assert.Equal([750.0, 500, 500, 250, 0], Timesteps(SamplerName.Pndm, null, 4));
        Assert.Equal([1.0], Timesteps(SamplerName.Pndm, TimestepSpacing.Leading, 1, offset: 1));
        Assert.Contains("x₀", Assert.Throws<ArgumentException>(() => DiffusionSamplers.Create(SamplerName.Pndm, NoiseSchedule.Linear(), new SamplerOptions { Prediction = PredictionType.Sample })).Message);
    }

    [Fact]
    public void SigmaSamplersTakeDiffusersFractionalLinspaceAndKarrasSigmas()
    {
        // diffusers' Euler-family schedulers: linspace(0, T − 1, N) in float32, not rounded.
        var t = Timesteps(SamplerName.Euler, null, 12);
        Assert.Equal([999.0, (float)(10 * (999.0 / 11)), (float)(9 * (999.0 / 11))], t.Take(3));
        Assert.Equal(0.0, t[^1]);
        // use_karras_sigmas: Karras levels between the σ of the spacing's first and last timesteps, at fractional timesteps.
        using var lms = DiffusionSamplers.Create(SamplerName.Lms, NoiseSchedule.Linear(), new SamplerOptions { Spacing = TimestepSpacing.Leading, StepsOffset = 1, UseKarrasSigmas = true });
        lms.SetTimesteps(10);
        Assert.Equal(901.0, lms.Timesteps[0], 6);
        Assert.Equal(1.0, lms.Timesteps[^1], 6);
        Assert.Contains(lms.Timesteps, s => s != Math.Floor(s));
        // DPM-Solver++'s are over the whole schedule and rounded, whatever the spacing.
        using var dpm = DiffusionSamplers.Create(SamplerName.DpmSolverPlusPlus, NoiseSchedule.Linear(), new SamplerOptions { Spacing = TimestepSpacing.Leading, UseKarrasSigmas = true });
        dpm.SetTimesteps(10);
        Assert.Equal(999.0, dpm.Timesteps[0]);
        Assert.Equal(0.0, dpm.Timesteps[^1]);
        Assert.All(dpm.Timesteps, s => Assert.Equal(Math.Floor(s), s));
        var e = Assert.Throws<ArgumentException>(() => DiffusionSamplers.Create(SamplerName.Ddim, NoiseSchedule.Linear(), new SamplerOptions { UseKarrasSigmas = true }));
        Assert.Contains("UseKarrasSigmas", e.Message);
    }

    [Fact]
    public void EulerFamilyStartsFromDiffusersInitialNoiseSigma()
    {
        // diffusers starts linspace and trailing runs at σ_max z in x_σ, i.e. √(1 − ᾱ) z in the schedule's scale; leading at z.
        var schedule = NoiseSchedule.Linear();
        double Scale(SamplerName name, TimestepSpacing? spacing)
        {
            using var sampler = DiffusionSamplers.Create(name, schedule, new SamplerOptions { Spacing = spacing });
            sampler.SetTimesteps(10);
            return sampler.InitialNoiseScale;
        }
        double start = Math.Sqrt(1 - schedule.AlphasCumprod[999]);
        Assert.Equal(start, Scale(SamplerName.Euler, TimestepSpacing.Linspace), 12);
        Assert.Equal(start, Scale(SamplerName.Lms, TimestepSpacing.Trailing), 12);
        Assert.Equal(start, Scale(SamplerName.EulerAncestral, TimestepSpacing.Linspace), 12);
        Assert.Equal(1.0, Scale(SamplerName.Euler, TimestepSpacing.Leading));
        Assert.Equal(1.0, Scale(SamplerName.EulerAncestral, null));   // Karras levels, the library's own start
        Assert.Equal(1.0, Scale(SamplerName.Ddim, TimestepSpacing.Linspace));

        // The sampling loop applies it: the network's first input is the noise times the scale.
        using var sampler = DiffusionSamplers.Create(SamplerName.Euler, schedule, new SamplerOptions { Clipping = X0Clipping.None });
        using var noise = ones(1, 1, 2, 2);
        double first = double.NaN;
        using var result = SamplingLoop.Run((x, t) => { if (double.IsNaN(first)) first = x[0, 0, 0, 0].item<float>(); return zeros_like(x); }, sampler, noise, 4);
        Assert.Equal(start, first, 6);
    }

    [Fact]
    public void DiscreteSamplersRefuseFractionalSpacingAndBadOffsetsNameTheProblem()
    {
        var e = Assert.Throws<ArgumentException>(() => DiffusionSamplers.Create(SamplerName.Ddim, NoiseSchedule.Linear(), new SamplerOptions { Spacing = TimestepSpacing.Karras }));
        Assert.Contains("Karras", e.Message);
        using var sampler = DiffusionSamplers.Create(SamplerName.Ddim, NoiseSchedule.Linear(), new SamplerOptions { StepsOffset = 150 });
        Assert.Contains("StepsOffset 150", Assert.Throws<ArgumentOutOfRangeException>(() => sampler.SetTimesteps(10)).Message);
        Assert.Contains("'no-such'", Assert.Throws<UnknownSamplerException>(() => DiffusionSamplers.Create("no-such", NoiseSchedule.Linear())).Message);
    }

    [Fact]
    public void NamesComeFromStringsKindsAndTheEnumNamesOldZipsHold()
    {
        Assert.Equal("dpm-solver++", default(SamplerName).Value);
        Assert.Equal("dpm-solver++", ((SamplerName)SamplerName.DpmSolverPlusPlus).Value);
        Assert.Equal("euler-ancestral", new SamplerName("EulerAncestral").Value);
        Assert.Equal("heun", ((SamplerName)"Heun").Value);
        var options = System.Text.Json.JsonSerializer.Deserialize<Microsoft.ML.Diffusion.Pipelines.GenerationOptions>("{\"Sampler\":\"Ddim\"}", Microsoft.ML.Diffusion.Models.DiffusionCheckpoint.JsonOptions)!;
        Assert.Equal((SamplerName)SamplerName.Ddim, options.Sampler);
        Assert.Contains("\"Sampler\":\"ddim\"", System.Text.Json.JsonSerializer.Serialize(options, Microsoft.ML.Diffusion.Models.DiffusionCheckpoint.JsonOptions));
    }

    [Fact]
    public void EveryStepReturnsThePredictedCleanImage()
    {
        var schedule = NoiseSchedule.Linear();
        foreach (var name in new SamplerName[] { SamplerName.Ddpm, SamplerName.Ddim, SamplerName.DpmSolverPlusPlus, SamplerName.EulerAncestral, SamplerName.Heun,
                     SamplerName.Pndm, SamplerName.Euler, SamplerName.Lms })
        {
            using var sampler = DiffusionSamplers.Create(name, schedule, new SamplerOptions { Clipping = X0Clipping.None, Spacing = TimestepSpacing.Trailing });
            sampler.SetTimesteps(5);
            using var x = full(1, 1, 2, 2, 0.5f);
            using var eps = zeros(1, 1, 2, 2);
            using var noise = zeros(1, 1, 2, 2);
            using var step = sampler.Step(eps, 0, x, noise);
            // ε̂ = 0 at x = 0.5 means x̂₀ = x / √ᾱ at the first timestep's noise level (t = 999 with trailing spacing).
            double sigma = Math.Sqrt((1 - schedule.AlphasCumprod[999]) / schedule.AlphasCumprod[999]);
            Assert.Equal(0.5 * Math.Sqrt(1 + sigma * sigma), step.PredictedOriginal[0, 0, 0, 0].item<float>(), 3);
        }
    }

    /// <summary>A sampler written against the public contract only: DDIM (η = 0) with trailing spacing.</summary>
    private sealed class TrailingDdim(NoiseSchedule schedule, SamplerOptions options) : DiffusionSamplerBase(schedule, options with { Spacing = TimestepSpacing.Trailing })
    {
        public override string Name => "tests-trailing-ddim";

        public override bool IsStochastic => false;

        public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
        {
            int t = TimestepAt(stepIndex), prev = NextTimestep(stepIndex);
            using var scope = NewDisposeScope();
            var (x0, eps) = Decompose(modelOutput, sample, t);
            double aPrev = Schedule.AlphaCumprodAt(prev);
            return Output(Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * eps, x0);
        }
    }

    [Fact]
    public void ASamplerRegisteredFromOutsideRunsThroughGenerate()
    {
        DiffusionSamplers.Register("tests-trailing-ddim", (s, o) => new TrailingDdim(s, o), _ => 10);
        Assert.Contains("tests-trailing-ddim", DiffusionSamplers.Names);
        manual_seed(1);
        using var model = new DiffusionModel(NoisePredictors.Create(new UNetOptions { ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1], AttentionResolutions = [] }),
            new NoiseScheduleOptions(), PredictionType.Epsilon);
        using var custom = model.Generate(new GenerationOptions { Sampler = "tests-trailing-ddim" }, [1, 2]);
        using var ddim = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 10, SamplerOptions = new() { Spacing = TimestepSpacing.Trailing } }, [1, 2]);
        Assert.Equal(0f, (custom - ddim).abs().max().item<float>(), 5);
    }
}
