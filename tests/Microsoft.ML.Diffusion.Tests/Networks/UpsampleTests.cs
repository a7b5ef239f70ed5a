using UpsampleLayer = Microsoft.ML.Diffusion.Networks.Legacy.Upsample;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Tests.Networks;

public class UpsampleTests
{
    [Theory]
    [InlineData(2, 3, 7, 7)]
    [InlineData(1, 64, 14, 14)]
    [InlineData(3, 5, 4, 6)]
    public void NearestDoubleMatchesInterpolateExactly(long n, long c, long h, long w)
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var x = randn(n, c, h, w);
        var expected = functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        var actual = UpsampleLayer.NearestDouble(x);
        Assert.Equal(new[] { n, c, 2 * h, 2 * w }, actual.shape);
        Assert.True(actual.eq(expected).all().item<bool>());
    }

    [Fact]
    public void NearestDoubleGradientSumsEachBlock()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x = randn(2, 3, 5, 5).requires_grad_(true);
        var upstream = randn(2, 3, 10, 10);
        (UpsampleLayer.NearestDouble(x) * upstream).sum().backward();
        // d/dx of each input pixel is the sum of the upstream gradient over its 2×2 block.
        var expected = upstream.view(2, 3, 5, 2, 5, 2).sum([3, 5]);
        Assert.True(x.grad!.allclose(expected, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void NearestDoubleWorksOnNonContiguousInput()
    {
        using var scope = NewDisposeScope();
        var x = arange(2 * 3 * 4 * 5, dtype: float32).view(2, 4, 5, 3).permute(0, 3, 1, 2);   // (2, 3, 4, 5), strided
        var expected = functional.interpolate(x.contiguous(), scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        Assert.True(UpsampleLayer.NearestDouble(x).eq(expected).all().item<bool>());
    }

    [Fact]
    public void NearestDoubleRejectsANonImageTensor()
    {
        using var x = zeros(3, 4);
        var e = Assert.Throws<ArgumentException>(() => UpsampleLayer.NearestDouble(x));
        Assert.Contains("(N, C, H, W)", e.Message);
    }
}
