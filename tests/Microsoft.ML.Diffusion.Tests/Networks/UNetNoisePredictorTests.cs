using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Networks;

public class UNetNoisePredictorTests
{
    [Theory]
    [InlineData(1, 28, new[] { 1, 2, 2 }, new[] { 7 })]
    [InlineData(3, 32, new[] { 1, 2, 2 }, new[] { 8 })]
    [InlineData(4, 32, new[] { 1, 2 }, new[] { 16 })]
    [InlineData(3, 64, new[] { 1, 2, 2, 2 }, new[] { 16 })]
    [InlineData(1, 16, new[] { 1 }, new int[0])]
    public void OutputHasTheInputShapeAndDependsOnTheTimestep(int channels, int size, int[] multipliers, int[] attention)
    {
        manual_seed(0);
        using var net = new UNetNoisePredictor(new UNetOptions
        {
            ImageChannels = channels, ImageSize = size, BaseChannels = 16, ChannelMultipliers = multipliers,
            AttentionResolutions = attention, NormGroups = 8, AttentionHeads = 2,
        });
        RandomizeOutputLayer(net);
        net.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn(2, channels, size, size);
        var early = net.forward(x, tensor(new long[] { 10, 10 }));
        var late = net.forward(x, tensor(new long[] { 900, 900 }));

        Assert.Equal(x.shape, early.shape);
        Assert.True(early.isfinite().all().item<bool>());
        double difference = (early - late).abs().max().item<float>();
        Assert.True(difference > 1e-4, $"the output should depend on t (max difference {difference})");
    }

    [Fact]
    public void EachSampleInABatchGetsItsOwnTimestep()
    {
        manual_seed(1);
        using var net = new UNetNoisePredictor(new UNetOptions { ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8] });
        RandomizeOutputLayer(net);
        net.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn(1, 1, 16, 16).expand(2, 1, 16, 16).contiguous();
        var both = net.forward(x, tensor(new long[] { 5, 700 }));
        var single = net.forward(x[0..1], tensor(new long[] { 700 }));
        Assert.True(both[1].allclose(single[0], rtol: 1e-4, atol: 1e-5));
        Assert.False(both[0].allclose(both[1], rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void UntrainedNetworkPredictsZeroBecauseTheOutputLayerStartsAtZero()
    {
        using var net = new UNetNoisePredictor(new UNetOptions { ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [] });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Assert.Equal(0f, net.forward(randn(2, 1, 16, 16), tensor(new long[] { 1, 2 })).abs().max().item<float>());
    }

    [Theory]
    [InlineData(30, "ImageSize")]          // 30 is not divisible by 4 for three levels
    [InlineData(28, "AttentionResolutions")]
    public void InvalidShapesAreRejectedWithTheSettingNamed(int size, string setting)
    {
        var options = new UNetOptions { ImageSize = size, AttentionResolutions = setting == "AttentionResolutions" ? [5] : [7] };
        var e = Assert.ThrowsAny<ArgumentException>(() => new UNetNoisePredictor(options));
        Assert.Equal(setting, e.ParamName);
    }

    // The output layer is zero-initialised; give it weights so that the rest of the network shows through.
    private static void RandomizeOutputLayer(UNetNoisePredictor net)
    {
        using var _ = no_grad();
        foreach (var (name, p) in net.named_parameters())
            if (name.StartsWith("output_conv", StringComparison.Ordinal)) p.normal_(0, 0.05);
    }
}

public class NormLayersTests
{
    [Fact]
    public void GroupNormStartsAsTheIdentityAffineMap()
    {
        // Guards the workaround for TorchSharp 0.107 leaving GroupNorm's parameters uninitialised.
        for (int i = 0; i < 20; i++)
        {
            using var norm = Microsoft.ML.Diffusion.Networks.NormLayers.GroupNorm(8, 64);
            Assert.True(norm.weight!.eq(1).all().item<bool>());
            Assert.True(norm.bias!.eq(0).all().item<bool>());
        }
    }
}
