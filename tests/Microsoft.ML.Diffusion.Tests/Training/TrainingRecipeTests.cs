using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.ML.Diffusion.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Training;

/// <summary>The training-recipe options, each on a case whose effect on the loss, noise, schedule or learning rate is known.</summary>
public class TrainingRecipeTests
{
    [Theory]
    [InlineData(PredictionType.Epsilon, 1.0, 1.0)]
    [InlineData(PredictionType.Epsilon, 100.0, 0.05)]
    [InlineData(PredictionType.VPrediction, 1.0, 0.5)]
    [InlineData(PredictionType.VPrediction, 100.0, 5.0 / 101)]
    [InlineData(PredictionType.Sample, 1.0, 1.0)]
    [InlineData(PredictionType.Sample, 100.0, 5.0)]
    public void MinSnrWeightsAreThePapersForEachTarget(PredictionType prediction, double snr, double expected)
        => Assert.Equal(expected, LossWeighting.MinSnr(prediction, snr, gamma: 5), 12);

    [Theory]
    [InlineData(PredictionType.Epsilon)]
    [InlineData(PredictionType.VPrediction)]
    public void MinSnrScalesAOneImageLossByItsTimestepsWeight(PredictionType prediction)
    {
        // Batch 1, no flips: both trainers draw the same t and noise from the same seed and start from the same weights, so
        // the first step's loss differs exactly by the weight of the t the trainers' generator draws first.
        using var image = SyntheticShapes.Generate(1, 16, seed: 3);
        var schedule = NoiseSchedule.Linear();
        double WeightOfFirstDraw(int seed)
        {
            using var generator = new Generator((ulong)seed, CPU);
            using var drawn = randint(0, schedule.Length, [1], dtype: int64, generator: generator);
            double alphaBar = schedule.AlphasCumprod[drawn.item<long>()];
            return LossWeighting.MinSnr(prediction, alphaBar / (1 - alphaBar), gamma: 5);
        }
        // A seed whose first timestep has a weight other than 1 (for ε: SNR above γ, the low-noise end), so the check can fail.
        int seed = Enumerable.Range(1, 200).First(s => Math.Abs(WeightOfFirstDraw(s) - 1) > 0.05);
        double FirstLoss(double? gamma)
        {
            using var trainer = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork,
                options: new DiffusionTrainerOptions { BatchSize = 1, Seed = seed, EmaDecay = 0, Prediction = prediction, MinSnrGamma = gamma }, device: CPU);
            trainer.TrainStep(image);
            return trainer.TakeMeanLoss();
        }
        Assert.Equal(WeightOfFirstDraw(seed) * FirstLoss(null), FirstLoss(5), 5);
    }

    [Fact]
    public void OffsetNoiseAddsAPerImagePerChannelConstantAndZeroDrawsWhatPlainNoiseDraws()
    {
        double VarianceOfChannelMeans(double offset)
        {
            using var generator = new Generator(7, CPU);
            using var noise = DiffusionTrainer.TrainingNoise([64, 3, 16, 16], offset, generator);
            using var means = noise.mean([2, 3]);
            return means.reshape(-1).var(0).item<float>();
        }
        // Var(mean of 256 N(0,1) values + N(0, offset²)) = 1/256 + offset²; 192 means estimate it within about 10 %.
        Assert.InRange(VarianceOfChannelMeans(0.5), 0.8 * (1.0 / 256 + 0.25), 1.2 * (1.0 / 256 + 0.25));
        Assert.InRange(VarianceOfChannelMeans(0), 0.5 / 256, 1.5 / 256);

        using var g1 = new Generator(9, CPU);
        using var g2 = new Generator(9, CPU);
        using var plain = randn([2, 1, 4, 4], dtype: float32, generator: g1);
        using var none = DiffusionTrainer.TrainingNoise([2, 1, 4, 4], 0, g2);
        Assert.True(plain.eq(none).all().item<bool>());
    }

    [Fact]
    public void ZeroTerminalSnrKeepsTheFirstStepAndEndsAtAlmostNoSignal()
    {
        var rescaled = NoiseSchedule.Create(new NoiseScheduleOptions { ZeroTerminalSnr = true });
        var plain = NoiseSchedule.Linear();
        Assert.Equal(plain.AlphasCumprod[0], rescaled.AlphasCumprod[0], 12);
        Assert.Equal(Math.Pow(2, -24), rescaled.AlphasCumprod[^1], 15);
        // Values from an independent float64 computation of Lin et al.'s Algorithm 1 with the end point √ᾱ_T = 2⁻¹².
        Assert.Equal(0.07612629185254059, rescaled.AlphasCumprod[499], 12);
        Assert.Equal(9.550227620590782e-08, rescaled.AlphasCumprod[998], 15);
        Assert.All(rescaled.Betas, b => Assert.InRange(b, 1e-12, 1 - 1e-12));
        Assert.True(plain.AlphasCumprod[^1] > 1e-5);   // the plain schedule never reaches pure noise
    }

    [Fact]
    public void TheLearningRateWarmsUpThenStaysOrDecaysToZero()
    {
        var o = new DiffusionTrainerOptions { WarmupSteps = 10, DecaySteps = 110 };
        Assert.Equal(0.5, DiffusionTrainer.LearningRateFactor(o, 5), 12);
        Assert.Equal(1.0, DiffusionTrainer.LearningRateFactor(o, 1000), 12);
        var linear = o with { LearningRateDecay = LearningRateDecay.Linear };
        Assert.Equal(1.0, DiffusionTrainer.LearningRateFactor(linear, 10), 12);
        Assert.Equal(0.5, DiffusionTrainer.LearningRateFactor(linear, 60), 12);
        Assert.Equal(0.0, DiffusionTrainer.LearningRateFactor(linear, 110), 12);
        Assert.Equal(0.0, DiffusionTrainer.LearningRateFactor(linear, 500), 12);
        var cosine = o with { LearningRateDecay = LearningRateDecay.Cosine };
        Assert.Equal(0.5 * (1 + Math.Cos(Math.PI / 4)), DiffusionTrainer.LearningRateFactor(cosine, 35), 12);
        Assert.Equal(0.5, DiffusionTrainer.LearningRateFactor(cosine, 60), 12);

        var e = Assert.Throws<ArgumentException>(() => new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, options: new DiffusionTrainerOptions { LearningRateDecay = LearningRateDecay.Cosine }, device: CPU));
        Assert.Contains("needs DecaySteps", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DiffusionTrainerOptions { MinSnrGamma = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DiffusionTrainerOptions { OffsetNoise = -1 }.Validate());
    }

    [Fact]
    public void TrainDiffusionDefaultsToTheMeasuredRecipeAndDecaysToZeroAtItsLastStep()
    {
        var defaults = new DiffusionTrainingOptions();
        Assert.Equal(2e-3, defaults.LearningRate);
        Assert.Equal(LearningRateDecay.Cosine, defaults.LearningRateDecay);
        Assert.Equal(5, defaults.MinSnrGamma);
        Assert.Equal(PredictionType.VPrediction, defaults.Prediction);
        Assert.Null(defaults.DecaySteps);
        // The step-wise trainer does not know its run's length, so it keeps plain DDPM training.
        var plain = new DiffusionTrainerOptions();
        Assert.Equal((2e-4, LearningRateDecay.Constant, (double?)null), (plain.LearningRate, plain.LearningRateDecay, plain.MinSnrGamma));

        var options = MLNetTestData.TinyTraining(steps: 12);
        options.ReportEvery = 1;
        var rates = new List<double>();
        options.Progress = p => rates.Add(p.LearningRate);
        TrainOnShapes(options);
        Assert.Equal(12, rates.Count);
        double peak = options.LearningRate;
        Assert.Equal(peak * 0.5 * (1 + Math.Cos(Math.PI * 3 / 7)), rates[7], 9);   // step 8 of a cosine from step 5 to 12
        Assert.All(rates.Skip(5).Zip(rates.Skip(6)), r => Assert.True(r.Second < r.First, "the rate falls after warm-up"));
        Assert.Equal(0, rates[^1], 12);
    }

    // TrainDiffusion on eight 8×8 shape images read from a temporary folder.
    private static ITransformer TrainOnShapes(DiffusionTrainingOptions options)
    {
        string folder = Path.Combine(Path.GetTempPath(), "mldiff-recipe-" + Guid.NewGuid().ToString("N"));
        try
        {
            var ml = new MLContext(seed: 1);
            var paths = MLNetTestData.WriteShapeImages(folder, count: 8);
            var data = ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { Path = Path.GetFileName(p) }));
            return ml.Transforms.LoadImages("Image", folder, nameof(ImagePathRow.Path))
                .Append(ml.Transforms.ResizeImages("Image", 8, 8))
                .Append(ml.Transforms.TrainDiffusion(options))
                .Fit(data);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void TrainDiffusionTakesTheRecipeAndTheModelKeepsItsSchedule()
    {
        var options = MLNetTestData.TinyTraining(steps: 3);
        options.Prediction = PredictionType.VPrediction;
        options.Schedule = new() { ZeroTerminalSnr = true };
        options.MinSnrGamma = 5;
        options.OffsetNoise = 0.1;
        options.LearningRateDecay = LearningRateDecay.Cosine;
        var trained = TrainOnShapes(options);
        using var stream = new MemoryStream();
        DiffusionTrainingTransformer.FindModel(trained).Save(stream);
        stream.Position = 0;
        using var model = DiffusionModel.Load(stream, CPU);
        Assert.True(model.Header.Schedule.ZeroTerminalSnr);
        Assert.Equal(PredictionType.VPrediction, model.Prediction);
        foreach (var sampler in new[] { "ddpm", "ddim", "dpm-solver++", "euler-ancestral", "heun" })
        {
            using var images = model.Generate(new GenerationOptions { Sampler = sampler, Steps = 4 }, [1, 2]);
            Assert.True(images.isfinite().all().item<bool>(), $"{sampler} made non-finite pixels on a zero-terminal-SNR schedule");
        }
    }
}
