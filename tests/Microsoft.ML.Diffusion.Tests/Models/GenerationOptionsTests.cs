using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.MLNet.Internal;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Training;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>One options type per concept, by composition: the sampler's settings live in SamplerOptions only, and reach the sampler from the engine and the ML.NET stage.</summary>
public class GenerationOptionsTests
{
    private static readonly SamplerOptions UnusualSampler = new()
    {
        Eta = 0.3, Clipping = X0Clipping.DynamicThreshold, ClipRange = 2, ThresholdPercentile = 0.9,
        UseLargeVariance = true, Spacing = TimestepSpacing.Trailing, StepsOffset = 1, SetAlphaToOne = false,
    };

    [Fact]
    public void EverySamplingSettingReachesTheSamplerWithTheModelsPrediction()
    {
        using var model = new DiffusionModel(NoisePredictors.Create(DiffusionTrainerTests.TinyNetwork), new NoiseScheduleOptions(), PredictionType.VPrediction);
        var options = new GenerationOptions { Sampler = "ddpm", SamplerOptions = UnusualSampler };
        using var sampler = model.CreateSampler(options);
        Assert.Equal("ddpm", sampler.Name);
        Assert.Equal(UnusualSampler with { Prediction = PredictionType.VPrediction }, sampler.Options);
        Assert.Equal(PredictionType.Epsilon, options.SamplerOptions.Prediction);   // the caller's options stay as given
    }

    [Fact]
    public void TheStagesSettingsRoundTripThroughJsonWithoutTheDevice()
    {
        var options = new DiffusionGenerationOptions
        {
            OutputColumnName = "Out", BatchSize = 3, Device = "cpu",
            Generation = { Sampler = "ddpm", Steps = 7, GuidanceScale = 2, SamplerOptions = UnusualSampler },
        };
        string json = System.Text.Json.JsonSerializer.Serialize(options, DiffusionCheckpoint.JsonOptions);
        Assert.DoesNotContain("Device", json);
        var read = System.Text.Json.JsonSerializer.Deserialize<DiffusionGenerationOptions>(json, DiffusionCheckpoint.JsonOptions)!;
        Assert.Equal(options with { Device = null }, read);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { SamplerOptions = new() { ThresholdPercentile = 1.5 } }.Validate());
        Assert.Throws<ArgumentException>(() => new DiffusionGenerationOptions { OutputColumnName = " " }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DiffusionInpaintingOptions { Inpainting = { JumpLength = 0 } }.Validate());
    }

    [Fact]
    public void StagesKeepTheirOwnCopyOfNestedOptions()
    {
        var options = new DiffusionGenerationOptions { Generation = { Steps = 4 } };
        var estimator = new MLContext().Transforms.DiffusionGenerate(
            new DiffusionModel(NoisePredictors.Create(DiffusionTrainerTests.TinyNetwork), new NoiseScheduleOptions(), PredictionType.Epsilon), options);
        options.Generation.Steps = 9;
        var transformer = estimator.Fit(new MLContext().Data.LoadFromEnumerable(Array.Empty<SeedRow>()));
        Assert.Equal(4, transformer.Options.Generation.Steps);
        transformer.Options.Generation.Steps = 11;
        Assert.Equal(4, transformer.Options.Generation.Steps);
    }

    [Fact]
    public void FlatSettingsOfOlderZipsMoveWhereTheOptionsHoldThemNow()
    {
        var generate = (DiffusionGenerationOptions)LegacyStageSettings.Read(Utf8(
            """{"OutputColumnName":"G","SeedColumnName":"Seed","ConditionColumnName":null,"GuidanceScale":2,"Seed":5,"Sampler":"Ddim","Steps":null,"Eta":0.5,"Clipping":"None","Spacing":"Trailing","OutputKind":"Pixels","BatchSize":3}"""),
            keepsModelNoiseAfterClipping: true);
        Assert.Equal(new DiffusionGenerationOptions
        {
            OutputColumnName = "G", SeedColumnName = "Seed", Seed = 5, OutputKind = GeneratedOutputKind.Pixels, BatchSize = 3,
            Generation = { Sampler = SamplerName.Ddim, GuidanceScale = 2, SamplerOptions = new() { Eta = 0.5, Clipping = X0Clipping.None, Spacing = TimestepSpacing.Trailing } },
        }, generate);

        var edit = (DiffusionImageToImageOptions)LegacyStageSettings.Read(Utf8(
            """{"Stage":"image-to-image","ImageColumnName":"Pixels","PixelRange":"Bytes","Strength":0.25,"OutputColumnName":"E","Sampler":"heun","Steps":12}"""),
            keepsModelNoiseAfterClipping: false);
        Assert.Equal(0.25, edit.Strength);
        Assert.Equal("Pixels", edit.ImageColumnName);
        Assert.Equal(12, edit.Generation.Steps);
        Assert.Equal("heun", edit.Generation.Sampler.Value);
        Assert.True(edit.Generation.SamplerOptions.UseClippedModelOutput);   // as that version generated

        var inpaint = (DiffusionInpaintingOptions)LegacyStageSettings.Read(Utf8(
            """{"Stage":"inpaint","MaskColumnName":"M","JumpLength":3,"Resamplings":2,"Steps":10,"Eta":0.5,"GuidanceScale":3,"OutputColumnName":"I"}"""),
            keepsModelNoiseAfterClipping: true);
        Assert.Equal(new InpaintingOptions { Steps = 10, JumpLength = 3, Resamplings = 2, Eta = 0.5, GuidanceScale = 3 }, inpaint.Inpainting);
        Assert.Equal("M", inpaint.MaskColumnName);
        var unset = (DiffusionInpaintingOptions)LegacyStageSettings.Read(Utf8("""{"Stage":"inpaint","Steps":null}"""), true);
        Assert.Equal(new InpaintingOptions().Steps, unset.Inpainting.Steps);

        Assert.Throws<System.Text.Json.JsonException>(() => LegacyStageSettings.Read(Utf8("""{"Stage":"outpaint"}"""), true));
    }

    private static byte[] Utf8(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    private sealed class SeedRow
    {
        public long Seed { get; set; }
    }
}
