using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>Image-to-image: noise to the strength's step, denoise from there; strength 0 and 1 are the two ends exactly.</summary>
public sealed class ImageToImageTests : IClassFixture<ImageToImageTests.Trained>
{
    public sealed class Trained : IDisposable
    {
        // A tiny UNet trained a few steps on smooth gradients, so its predictions are not zero.
        public DiffusionModel Model { get; }

        public Trained()
        {
            using var trainer = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, new NoiseScheduleOptions(),
                new DiffusionTrainerOptions { BatchSize = 8, Seed = 3, WarmupSteps = 1, LearningRate = 2e-3, EmaDecay = 0 }, CPU);
            using var data = (linspace(-1, 1, 16).view(1, 1, 1, 16) * ones(16, 1, 16, 1)) * (rand(16, 1, 1, 1, generator: new Generator(2)) * 2 - 1);
            trainer.Train(data, steps: 10);
            Model = trainer.ToModel();
        }

        public void Dispose() => Model.Dispose();
    }

    private readonly DiffusionModel _model;

    public ImageToImageTests(Trained trained) => _model = trained.Model;

    private Tensor Inputs() => (linspace(-1, 1, 16).view(1, 1, 1, 16) * ones(3, 1, 16, 1)) * tensor(new float[] { 1f, -0.5f, 0.25f }).view(3, 1, 1, 1);

    private static double MeanSquare(Tensor a, Tensor b) => (a - b).square().mean().item<float>();

    [Theory]
    [InlineData("ddim", 10)]
    [InlineData("ddpm", 10)]
    [InlineData("dpm-solver++", 10)]
    [InlineData("euler-ancestral", 10)]
    [InlineData("heun", 6)]
    public void StrengthZeroKeepsTheImageStrengthOneIsGenerationAndInBetweenStaysCloser(string sampler, int steps)
    {
        using var scope = NewDisposeScope();
        var options = new GenerationOptions { Sampler = sampler, Steps = steps };
        long[] seeds = [11, 12, 13];
        var input = Inputs();

        Assert.Equal(input.data<float>().ToArray(), _model.ImageToImage(options, input, 0, seeds).data<float>().ToArray());
        Assert.Equal(_model.Generate(options, seeds).data<float>().ToArray(), _model.ImageToImage(options, input, 1, seeds).data<float>().ToArray());

        var light = _model.ImageToImage(options, input, 0.3, seeds);
        var heavy = _model.ImageToImage(options, input, 0.9, seeds);
        Assert.True(MeanSquare(light, input) < MeanSquare(heavy, input),
            $"{sampler}: strength 0.3 moved the images by {MeanSquare(light, input):F4}, strength 0.9 by {MeanSquare(heavy, input):F4}");
        // Seeded: the same seeds give the same edit.
        Assert.Equal(light.data<float>().ToArray(), _model.ImageToImage(options, input, 0.3, seeds).data<float>().ToArray());
    }

    [Fact]
    public void BadStrengthsImagesAndSeedsAreNamed()
    {
        using var scope = NewDisposeScope();
        var options = new GenerationOptions { Sampler = "ddim", Steps = 4 };
        var input = Inputs();
        long[] seeds = [1, 2, 3];
        foreach (double bad in new[] { -0.1, 1.5, double.NaN })
            Assert.Contains("strength must lie in [0, 1]", Assert.Throws<ArgumentOutOfRangeException>(() => _model.ImageToImage(options, input, bad, seeds)).Message);
        Assert.Contains("shape (N, 1, 16, 16)", Assert.Throws<ArgumentException>(() => _model.ImageToImage(options, zeros(3, 1, 8, 8), 0.5, seeds)).Message);
        Assert.Contains("3 images for 2 seeds", Assert.Throws<ArgumentException>(() => _model.ImageToImage(options, input, 0.5, [1, 2])).Message);
        var nan = input.clone();
        nan[0, 0, 0, 0] = tensor(float.NaN);
        Assert.Contains("1 NaN or infinite", Assert.Throws<ArgumentException>(() => _model.ImageToImage(options, nan, 0.5, seeds)).Message);
    }
}
