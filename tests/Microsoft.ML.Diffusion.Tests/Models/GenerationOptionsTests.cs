using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Training;
using Xunit;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>One options type per concept: every sampling setting reaches the sampler, from the engine and from the ML.NET stage.</summary>
public class GenerationOptionsTests
{
    private static GenerationOptions Unusual(GenerationOptions o)
    {
        o.Sampler = "ddpm";
        o.Eta = 0.3;
        o.Clipping = X0Clipping.DynamicThreshold;
        o.ClipRange = 2;
        o.ThresholdPercentile = 0.9;
        o.UseLargeVariance = true;
        o.Spacing = TimestepSpacing.Trailing;
        o.StepsOffset = 1;
        o.SetAlphaToOne = false;
        return o;
    }

    [Fact]
    public void EverySamplingSettingReachesTheSamplerFromTheEngineAndTheStage()
    {
        using var model = new DiffusionModel(new UNetNoisePredictor(DiffusionTrainerTests.TinyNetwork), new NoiseScheduleOptions(), PredictionType.VPrediction);
        var expected = new SamplerOptions
        {
            Prediction = PredictionType.VPrediction, Eta = 0.3, Clipping = X0Clipping.DynamicThreshold, ClipRange = 2, ThresholdPercentile = 0.9,
            UseLargeVariance = true, Spacing = TimestepSpacing.Trailing, StepsOffset = 1, SetAlphaToOne = false,
        };
        foreach (var options in new[] { Unusual(new GenerationOptions()), Unusual(new DiffusionGenerationOptions()) })
        {
            using var sampler = model.CreateSampler(options);
            Assert.Equal("ddpm", sampler.Name);
            Assert.Equal(expected, sampler.Options);
        }
    }

    [Fact]
    public void TheStagesSettingsRoundTripThroughJsonWithoutTheDevice()
    {
        var options = (DiffusionGenerationOptions)Unusual(new DiffusionGenerationOptions { OutputColumnName = "Out", BatchSize = 3, Device = "cpu" });
        string json = System.Text.Json.JsonSerializer.Serialize(options, DiffusionCheckpoint.JsonOptions);
        Assert.DoesNotContain("Device", json);
        var read = System.Text.Json.JsonSerializer.Deserialize<DiffusionGenerationOptions>(json, DiffusionCheckpoint.JsonOptions)!;
        Assert.Equal(options with { Device = null }, read);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { ThresholdPercentile = 1.5 }.Validate());
        Assert.Throws<ArgumentException>(() => new DiffusionGenerationOptions { OutputColumnName = " " }.Validate());
    }
}
