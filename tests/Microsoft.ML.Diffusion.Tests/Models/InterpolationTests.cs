using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>Interpolating between two seeds: the ends are the seeds' own images, the images between change smoothly.</summary>
public sealed class InterpolationTests : IClassFixture<ImageToImageTests.Trained>
{
    private readonly DiffusionModel _model;

    public InterpolationTests(ImageToImageTests.Trained trained) => _model = trained.Model;

    [Theory]
    [InlineData("ddim")]
    [InlineData("dpm-solver++")]
    public void TheEndsAreTheSeedsImagesAndNeighboursAreCloserThanTheEnds(string sampler)
    {
        using var scope = NewDisposeScope();
        var options = new GenerationOptions { Sampler = sampler, Steps = 8 };
        var strip = _model.Interpolate(options, 3, 4, count: 5);
        Assert.Equal(new long[] { 5, 1, 16, 16 }, strip.shape);
        // Equal up to float rounding (a batch of 5 runs other kernels than a batch of 1).
        Assert.True((_model.Generate(options, [3]) - strip[0].unsqueeze(0)).abs().max().item<float>() < 1e-4);
        Assert.True((_model.Generate(options, [4]) - strip[4].unsqueeze(0)).abs().max().item<float>() < 1e-4);
        double Distance(int i, int j) => (strip[i] - strip[j]).square().mean().item<float>();
        Assert.True(Distance(0, 1) < Distance(0, 4) && Distance(3, 4) < Distance(0, 4), "neighbours should be closer than the two ends");
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void BetweenTwoConditionsTheEndsAreEachConditionsImage(double guidance)
    {
        using var model = ForwardChunkingTests.RandomClassModel();
        using var scope = NewDisposeScope();
        var options = new GenerationOptions { Sampler = "ddim", Steps = 6, GuidanceScale = guidance };
        using var first = ConditionBatch.Classes(tensor(new long[] { 0 }));
        using var last = ConditionBatch.Classes(tensor(new long[] { 2 }));
        var strip = model.InterpolateConditions(options, seed: 7, first, last, count: 4);
        Assert.Equal(new long[] { 4, 1, 16, 16 }, strip.shape);
        var a = model.Generate(options, [7], condition: first);
        var b = model.Generate(options, [7], condition: last);
        Assert.True((a - b).abs().max().item<float>() > 1e-3, "the two classes must give different images for the test to mean anything");
        Assert.True((a - strip[0].unsqueeze(0)).abs().max().item<float>() < 1e-4);
        Assert.True((b - strip[3].unsqueeze(0)).abs().max().item<float>() < 1e-4);
        double Distance(Tensor x, Tensor y) => (x - y).square().mean().item<float>();
        Assert.True(Distance(strip[1], a[0]) < Distance(strip[1], b[0]) && Distance(strip[2], b[0]) < Distance(strip[2], a[0]), "each step moves towards the later condition");
        Assert.Contains("one condition", Assert.Throws<ArgumentException>(() => model.InterpolateConditions(options, 7, ConditionBatch.Classes(tensor(new long[] { 0, 1 })), last, 4)).Message);
    }

    [Fact]
    public void AStripNeedsTwoImages()
        => Assert.Contains("at least 2 images", Assert.Throws<ArgumentOutOfRangeException>(() => _model.Interpolate(new GenerationOptions(), 1, 2, count: 1)).Message);
}
