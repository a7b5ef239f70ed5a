using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Training;

public class DiffusionTrainerTests(ITestOutputHelper output)
{
    internal static readonly UNetOptions TinyNetwork = new()
    {
        ImageChannels = 1, ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8], NormGroups = 8,
    };

    internal static DiffusionTrainerOptions FastOptions(int seed) => new()
    {
        BatchSize = 32, LearningRate = 2e-3, WarmupSteps = 20, EmaDecay = 0.99, Seed = seed,
    };

    [Fact]
    public void TrainingLowersTheLossAndSamplesLookLikeTheData()
    {
        using var data = SyntheticShapes.Generate(256, 16, seed: 1);
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(seed: 5), device: CPU);
        var reports = new List<TrainingProgress>();
        trainer.Train(data, 400, reports.Add, reportEvery: 50);

        output.WriteLine(string.Join("\n", reports.Select(r => $"step {r.Step}: loss {r.Loss:F4}, lr {r.LearningRate:E2}, {r.StepsPerSecond:F1} steps/s")));
        Assert.Equal(8, reports.Count);
        Assert.Equal(400, trainer.StepsDone);
        Assert.True(reports[^1].Loss < 0.5 * reports[0].Loss, $"loss should fall by half: {reports[0].Loss:F4} → {reports[^1].Loss:F4}");

        // Measure: RMS distance from each image to its nearest training image. Samples from a model that
        // learned the data sit far closer to it than pure noise (clipped to the data range) does.
        using var model = trainer.ToModel();
        var seeds = Enumerable.Range(0, 32).Select(i => (long)i).ToArray();
        using var samples = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 25 }, seeds);
        using var noise = randn(32, 1, 16, 16, generator: new Generator(99)).clamp(-1, 1);
        double sampleDistance = NearestNeighbourDistance.MeanRms(samples, data);
        double noiseDistance = NearestNeighbourDistance.MeanRms(noise, data);
        output.WriteLine($"nearest-neighbour RMS: samples {sampleDistance:F3}, noise {noiseDistance:F3}");
        Assert.True(sampleDistance < 0.5 * noiseDistance, $"samples ({sampleDistance:F3}) should be much closer to the data than noise ({noiseDistance:F3})");
    }

    [Theory]
    [InlineData(PredictionType.VPrediction)]
    [InlineData(PredictionType.Sample)]
    public void OtherTargetsTrainToo(PredictionType prediction)
    {
        using var data = SyntheticShapes.Generate(128, 16, seed: 3);
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(seed: 2) with { Prediction = prediction }, device: CPU);
        var reports = new List<TrainingProgress>();
        trainer.Train(data, 150, reports.Add, reportEvery: 50);
        Assert.True(reports[^1].Loss < 0.6 * reports[0].Loss, $"{prediction}: loss should fall: {reports[0].Loss:F4} → {reports[^1].Loss:F4}");
        using var model = trainer.ToModel();
        Assert.Equal(prediction, model.Prediction);
        using var samples = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 10 }, [1L, 2L]);
        Assert.True(samples.isfinite().all().item<bool>());
    }

    [Fact]
    public void SameSeedGivesTheSameModelAndImages()
    {
        using var data = SyntheticShapes.Generate(64, 16, seed: 2);
        float[] Run(int seed)
        {
            using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(seed) with { BatchSize = 16 }, device: CPU);
            trainer.Train(data, 20);
            using var model = trainer.ToModel();
            using var images = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddpm, Steps = 50 }, [1L, 2L]);
            return images.data<float>().ToArray();
        }
        var first = Run(3);
        var second = Run(3);
        var other = Run(4);
        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public void EachImageDependsOnlyOnItsOwnSeed()
    {
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(1), device: CPU);
        using var data = SyntheticShapes.Generate(32, 16);
        trainer.Train(data, 5);
        using var model = trainer.ToModel();
        var options = new GenerationOptions { Sampler = SamplerName.Ddpm, Steps = 20 };
        using var pair = model.Generate(options, [7L, 8L]);
        using var alone = model.Generate(options, [8L]);
        Assert.True(pair[1].allclose(alone[0], rtol: 1e-4, atol: 1e-5));
        Assert.False(pair[0].allclose(pair[1]));
    }

    [Fact]
    public void BadTrainingImagesAreRejectedWithAClearMessage()
    {
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(0), device: CPU);
        using var wrongSize = zeros(4, 1, 28, 28);
        Assert.Contains("(N, 1, 16, 16)", Assert.Throws<ArgumentException>(() => trainer.Train(wrongSize, 1)).Message);
        using var wrongChannels = zeros(4, 3, 16, 16);
        Assert.Contains("shape", Assert.Throws<ArgumentException>(() => trainer.Train(wrongChannels, 1)).Message);
        using var nan = zeros(4, 1, 16, 16);
        nan[1, 0, 3, 3] = tensor(float.NaN);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => trainer.Train(nan, 1)).Message);
        using var unscaled = full(4, 1, 16, 16, 255f);
        Assert.Contains("[−1, 1]", Assert.Throws<ArgumentException>(() => trainer.Train(unscaled, 1)).Message);
        Assert.Equal(0, trainer.StepsDone);
    }

    [Fact]
    public void CancellationStopsTrainingBetweenSteps()
    {
        using var data = SyntheticShapes.Generate(32, 16);
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(0), device: CPU);
        using var cts = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => trainer.Train(data, 100, p => { if (p.Step >= 3) cts.Cancel(); }, reportEvery: 1, cancellationToken: cts.Token));
        Assert.Equal(3, trainer.StepsDone);
        trainer.Train(data, 2);   // still usable afterwards
        Assert.Equal(5, trainer.StepsDone);
    }

    [Fact]
    public void ResumingFromASavedStateContinuesBitForBit()
    {
        using var data = SyntheticShapes.Generate(48, 16, seed: 4);
        var options = FastOptions(7) with { BatchSize = 16 };   // 3 batches an epoch, so the resume lands mid-epoch
        string path = Path.Combine(Path.GetTempPath(), $"mldiffusion-state-{Guid.NewGuid():N}.zip");
        try
        {
            using var straight = new DiffusionTrainer(TinyNetwork, options: options, device: CPU);
            straight.Train(data, 8);

            using (var first = new DiffusionTrainer(TinyNetwork, options: options, device: CPU))
            {
                first.Train(data, 4);
                first.SaveState(path);
            }
            using var resumed = new DiffusionTrainer(TinyNetwork, options: options with { Seed = 99 }, device: CPU);
            resumed.LoadState(path);
            Assert.Equal(4, resumed.StepsDone);
            resumed.Train(data, 4);

            var a = straight.Network.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
            var b = resumed.Network.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
            Assert.Equal(a, b);
            using var ma = straight.ToModel();
            using var mb = resumed.ToModel();
            Assert.Equal(ma.Network.parameters().SelectMany(p => p.data<float>().ToArray()), mb.Network.parameters().SelectMany(p => p.data<float>().ToArray()));

            using var other = new DiffusionTrainer(TinyNetwork with { BaseChannels = 8 }, options: options, device: CPU);
            Assert.Contains("different network", Assert.Throws<CheckpointFormatException>(() => other.LoadState(path)).Message);
            File.WriteAllBytes(path, File.ReadAllBytes(path)[..200]);
            Assert.Throws<CheckpointFormatException>(() => resumed.LoadState(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void WarmupRampsTheLearningRate()
    {
        using var trainer = new DiffusionTrainer(TinyNetwork, options: FastOptions(0) with { WarmupSteps = 10, LearningRate = 1e-3 }, device: CPU);
        Assert.Equal(1e-4, trainer.CurrentLearningRate, 12);
        using var data = SyntheticShapes.Generate(32, 16);
        trainer.Train(data, 12);
        Assert.Equal(1e-3, trainer.CurrentLearningRate, 12);
    }
}
