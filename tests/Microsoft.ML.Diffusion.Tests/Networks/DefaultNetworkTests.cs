using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Networks;

/// <summary>TrainDiffusion's default networks: diffusers' families of the UNet settings' shape, with the library's speed work.</summary>
public sealed class DefaultNetworkTests
{
    private static readonly UNetOptions Bench = new()
    {
        ImageChannels = 1, ImageSize = 28, BaseChannels = 32, ChannelMultipliers = [1, 2, 2], ResidualBlocksPerLevel = 1, AttentionResolutions = [7],
    };

    private static long Parameters(NoisePredictorOptions options)
    {
        using var network = NoisePredictors.Create(options);
        return network.parameters().Sum(p => p.numel());
    }

    [Fact]
    public void UnconditionalAndClassModelsAreUNet2DModelsWithTheOwnUNetsParameterCount()
    {
        var plain = Assert.IsType<UNet2DModelOptions>(DiffusersUNetShapes.Like(Bench));
        Assert.Equal([32, 64, 64], plain.BlockOutChannels);
        Assert.Equal(["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"], plain.DownBlockTypes);
        Assert.Equal(["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], plain.UpBlockTypes);
        Assert.Null(plain.AttentionHeadDim);   // one head over all channels, as the UNet's AttentionHeads = 1
        Assert.Equal(Parameters(Bench), Parameters(plain));

        var classes = Bench with { Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = 10 } };
        var conditional = Assert.IsType<UNet2DModelOptions>(DiffusersUNetShapes.Like(classes));
        Assert.True(conditional.LearnedNullClass);
        Assert.Equal(Parameters(classes), Parameters(conditional));
        Assert.Equal(8, Assert.IsType<UNet2DModelOptions>(DiffusersUNetShapes.Like(Bench with { AttentionHeads = 8 })).AttentionHeadDim);
    }

    [Fact]
    public void TextAndVectorModelsAreUNet2DConditionModelsReadingTheConditionEncoder()
    {
        var text = Bench with { Condition = new ConditioningOptions { Kind = ConditionKind.Text, VocabularySize = 20, TextWidth = 32, TextHeads = 4 } };
        var options = Assert.IsType<UNet2DConditionOptions>(DiffusersUNetShapes.Like(text));
        var config = options.Config;
        Assert.Equal(32, config.CrossAttentionDim);
        Assert.Equal(["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"], config.DownBlockTypes);
        Assert.Equal(["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"], config.UpBlockTypes);
        using var network = Assert.IsType<UNet2DConditionNoisePredictor>(NoisePredictors.Create(options));
        Assert.NotNull(network.ConditionEncoder);

        // Untrained, it predicts 0 (conv_out starts at zero), with or without a condition.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var tokens = ConditionBatch.Tokens(tensor(new long[,] { { 3, 4, 0 }, { 5, 0, 0 } }));
        Assert.Equal(0f, network.Forward(randn(2, 1, 28, 28), tensor(new long[] { 5, 500 }), tokens).abs().max().item<float>());
        Assert.Equal([2L, 1, 28, 28], network.Forward(randn(2, 1, 28, 28), tensor(new long[] { 5, 500 }), null).shape);

        var vector = Bench with { Condition = new ConditioningOptions { Kind = ConditionKind.Vector, VectorSize = 5, TextWidth = 16 } };
        Assert.Equal(16, Assert.IsType<UNet2DConditionOptions>(DiffusersUNetShapes.Like(vector)).Config.CrossAttentionDim);
    }

    [Fact]
    public void TheLearnedNullClassIsTheLabelAfterTheLastClass()
    {
        var options = Assert.IsType<UNet2DModelOptions>(DiffusersUNetShapes.Like(
            Bench with { ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1, 2], AttentionResolutions = [4], NormGroups = 4, Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = 3 } }));
        manual_seed(2);
        using var network = NoisePredictors.Create(options);
        using (no_grad())
            foreach (var (name, p) in network.named_parameters())
                if (name.StartsWith("conv_out", StringComparison.Ordinal)) p.normal_(0, 0.1);
        network.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = randn(3, 1, 8, 8);
        var t = tensor(new long[] { 10, 400, 900 });
        using var labels = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2 }));
        using var dropped = labels.AllNull();
        var unconditional = network.Forward(x, t, null);
        Assert.Equal(unconditional.data<float>().ToArray(), network.Forward(x, t, dropped).data<float>().ToArray());
        Assert.False(unconditional.allclose(network.Forward(x, t, labels)));

        // diffusers sees classes + 1 embeddings and the null label named in a field it ignores; the library reads it back.
        string json = UNet2DModelConfig.Write(options);
        Assert.Contains("\"num_class_embeds\": 4", json);
        Assert.Contains("\"_null_class_label\": 3", json);
        Assert.Equal(options, UNet2DModelConfig.Read(json, "config.json") with { DownBlockTypes = options.DownBlockTypes, UpBlockTypes = options.UpBlockTypes, BlockOutChannels = options.BlockOutChannels });
        var wrong = Assert.Throws<CheckpointFormatException>(() => UNet2DModelConfig.Read(json.Replace("\"_null_class_label\": 3", "\"_null_class_label\": 1"), "config.json"));
        Assert.Contains("_null_class_label 1", wrong.Message);
    }

    // The default class model computes what the first UNet of the same settings computes (flip_sin_to_cos aside, a
    // permutation of the time features) and starts where that one starts: every weight drawn from the same law (same
    // bounds, same constants, conv_out at zero), so quality differences between the two come from which numbers are
    // drawn, not from how.
    [Fact]
    public void TheClassModelStartsFromTheFirstUNetsInitialDistribution()
    {
        var classes = Bench with { Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = 10 } };
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var first = new UNetNoisePredictor(classes);
        var expected = UNetAsUNet2DModel.Weights(classes, first.state_dict()).ToDictionary(w => w.Name, w => w.Value);
        manual_seed(1);
        using var network = NoisePredictors.Create(DiffusersUNetShapes.Like(classes));
        var actual = network.state_dict();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, value) in actual)
        {
            var drawn = expected[name];
            Assert.Equal(drawn.shape, value.shape);
            if (drawn.max().item<float>() == drawn.min().item<float>())
            {
                Assert.True(drawn.equal(value).all().item<bool>(), $"{name}: the first UNet starts it at the constant {drawn.flatten()[0].item<float>()}");
                continue;
            }
            double std = drawn.std().item<float>(), largest = drawn.abs().max().item<float>();
            double stdRatio = value.std().item<float>() / std, largestRatio = value.abs().max().item<float>() / largest;
            Assert.True(stdRatio is > 0.75 and < 1.33 && largestRatio is > 0.85 and < 1.18,
                $"{name}: std {value.std().item<float>():F4} and largest {value.abs().max().item<float>():F4}, the first UNet's {std:F4} and {largest:F4}");
        }
    }

    // libtorch computes wrong gradients for 3×3 convolutions with few output channels on several threads; the output
    // projection (conv_out of the UNets) pads them away while autograd records. Compared with one thread's plain convolution.
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    public void TheOutputProjectionsGradientsMatchASingleThreadedConvolution(int channels)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        var input = randn(64, 32, 28, 28, generator: generator);
        var upstream = randn(64, channels, 28, 28, generator: generator);
        using var projection = new OutputProjection(32, channels, zeroInitialised: false);

        var x = input.clone().requires_grad_(true);
        (projection.forward(x) * upstream).sum().backward();
        var parameters = projection.parameters().ToArray();   // weight, bias

        int threads = get_num_threads();
        Tensor referenceInput, referenceWeight;
        try
        {
            set_num_threads(1);
            var w = parameters[0].detach().clone().requires_grad_(true);
            var b = parameters[1].detach().clone();
            var xr = input.clone().requires_grad_(true);
            (nn.functional.conv2d(xr, w, b, padding: [1, 1]) * upstream).sum().backward();
            (referenceInput, referenceWeight) = (xr.grad!, w.grad!);
        }
        finally
        {
            set_num_threads(threads);
        }
        Assert.True((x.grad! - referenceInput).abs().max().item<float>() <= 1e-4 * referenceInput.abs().max().item<float>(), "input gradients differ");
        Assert.True((parameters[0].grad! - referenceWeight).abs().max().item<float>() <= 1e-4 * referenceWeight.abs().max().item<float>(), "weight gradients differ");
    }
}
