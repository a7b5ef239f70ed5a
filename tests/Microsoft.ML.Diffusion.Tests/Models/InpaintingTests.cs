using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>RePaint inpainting: the walk over the timesteps, the kept region kept exactly, and the ends of the mask.</summary>
public sealed class InpaintingTests : IClassFixture<ImageToImageTests.Trained>
{
    private readonly DiffusionModel _model;

    public InpaintingTests(ImageToImageTests.Trained trained) => _model = trained.Model;

    [Fact]
    public void TheWalkGoesDownAndJumpsBackAsDiffusersRePaintDoes()
    {
        // diffusers' RePaintScheduler.set_timesteps(10, jump_length=3, jump_n_sample=2) on 1,000 training steps.
        int[] expected = [900, 800, 700, 600, 700, 800, 900, 800, 700, 600, 500, 400, 300, 400, 500, 600, 500, 400, 300, 200, 100, 0, 100, 200, 300, 200, 100, 0];
        Assert.Equal(expected, RePaintTimesteps.Create(1000, 10, 3, 2));
        Assert.Equal([900, 800, 700, 600, 500, 400, 300, 200, 100, 0], RePaintTimesteps.Create(1000, 10, 3, 1));   // no resampling
    }

    [Fact]
    public void TheKeptRegionIsKeptExactlyAndTheRedrawnOneChanges()
    {
        using var scope = NewDisposeScope();
        var input = (linspace(-1, 1, 16).view(1, 1, 1, 16) * ones(2, 1, 16, 1)) * tensor(new float[] { 1f, -0.5f }).view(2, 1, 1, 1);
        var mask = zeros(2, 1, 16, 16);
        mask[.., .., .., TensorIndex.Slice(8, 16)] = tensor(1f);   // redraw the right half
        var options = new InpaintingOptions { Steps = 10, JumpLength = 3, Resamplings = 2 };
        var steps = new List<(int Done, int Total)>();
        var output = _model.Inpaint(options, input, mask, [5, 6], (d, t) => steps.Add((d, t)));

        var keep = mask.eq(0).expand_as(input);
        Assert.Equal(input.masked_select(keep).data<float>().ToArray(), output.masked_select(keep).data<float>().ToArray());
        Assert.True((output - input).abs().masked_select(~keep).max().item<float>() > 0.01);
        Assert.Equal(19, steps.Count);   // the walk's steps down
        Assert.Equal((19, 19), steps[^1]);
        Assert.Equal(output.data<float>().ToArray(), _model.Inpaint(options, input, mask, [5, 6]).data<float>().ToArray());   // seeded

        // A mask of zeros keeps everything; a mask of ones redraws everything.
        Assert.Equal(input.data<float>().ToArray(), _model.Inpaint(options, input, zeros_like(mask), [5, 6]).data<float>().ToArray());
        var redrawn = _model.Inpaint(options, input, ones_like(mask), [5, 6]);
        Assert.True((redrawn - input).abs().mean().item<float>() > 0.05);
    }

    [Fact]
    public void BadMasksAndOptionsAreNamed()
    {
        using var scope = NewDisposeScope();
        var input = zeros(2, 1, 16, 16);
        var options = new InpaintingOptions { Steps = 4, JumpLength = 2, Resamplings = 1 };
        Assert.Contains("mask must have shape (2, 1 or 1, 16, 16)", Assert.Throws<ArgumentException>(() => _model.Inpaint(options, input, zeros(2, 1, 8, 8), [1, 2])).Message);
        Assert.Contains("mask's values must lie in [0, 1]", Assert.Throws<ArgumentException>(() => _model.Inpaint(options, input, full(2, 1, 16, 16, 2f), [1, 2])).Message);
        Assert.Contains("Resamplings", Assert.Throws<ArgumentOutOfRangeException>(() => _model.Inpaint(options with { Resamplings = 0 }, input, zeros(2, 1, 16, 16), [1, 2])).Message);
        Assert.Contains("2 images for 1 seeds", Assert.Throws<ArgumentException>(() => _model.Inpaint(options, input, zeros(2, 1, 16, 16), [1])).Message);
    }
}
