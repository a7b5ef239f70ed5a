using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// diffusers' UNet2DConditionModel (Stable Diffusion 1.x/2.x): the folders diffusers v0.21.4 wrote
/// (TestData/StableDiffusion/unet, make_unet_fixtures.py) load as they are and give diffusers' outputs.
/// </summary>
public sealed class UNet2DConditionModelTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-unet-").FullName;

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "unet", name);

    private static Dictionary<string, Tensor> Io(string name) =>
        SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(name), "io.safetensors")), name);

    // The largest difference from diffusers' output, relative to the output's largest magnitude.
    private static double Error(Tensor output, Tensor expected)
    {
        Assert.Equal(expected.shape, output.shape);
        return (output - expected).abs().max().item<float>() / expected.abs().max().item<float>();
    }

    private static Tensor Run(UNet2DConditionModel network, Dictionary<string, Tensor> io)
    {
        using var noGrad = no_grad();
        return network.forward(io["sample"], io["timestep"], io["encoder_hidden_states"]);
    }

    // A copy of a fixture folder to spoil.
    private string Copy(string name)
    {
        string folder = Path.Combine(_folder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(Fixture(name))) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    private static void EditConfig(string folder, Func<string, string> edit)
    {
        string path = Path.Combine(folder, "config.json");
        string before = File.ReadAllText(path), after = edit(before);
        Assert.NotEqual(before, after);
        File.WriteAllText(path, after);
    }

    private static void EditWeights(string folder, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(folder, UNet2DConditionModel.WeightsFile);
        var weights = SafeTensors.Read(File.ReadAllBytes(path), path);
        edit(weights);
        File.WriteAllBytes(path, SafeTensors.Write(weights.Select(kv => (kv.Key, kv.Value))));
    }

    [Theory]
    [InlineData("sd1-tiny")]      // diffusers' SD pipeline tests' UNet, float16 file
    [InlineData("sd2-tiny")]      // SD 2.x settings (linear projections, heads per level, upcast attention), float16 file
    [InlineData("sd-variants")]   // every other setting away from its default, odd sides, fractional timesteps, float32 file
    public void AFolderDiffusersWroteGivesDiffusersOutputAndParameterCount(string name)
    {
        using var scope = NewDisposeScope();
        using var network = UNet2DConditionModel.FromPretrained(Fixture(name));
        var io = Io(name);
        Assert.Equal(io["parameter_count"].item<long>(), network.parameters().Sum(p => p.numel()));
        Assert.All(network.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));   // half-precision files are held as float32
        double error = Error(Run(network, io), io["output"]);
        Assert.True(error <= 1e-4, $"{name}: largest difference is {error:E2} of the largest output");
    }

    [Fact]
    public void AFloat32CopyOfAHalfPrecisionFileGivesTheSameOutput()
    {
        using var scope = NewDisposeScope();
        string folder = Copy("sd1-tiny");
        EditWeights(folder, w =>
        {
            foreach (var key in w.Keys.ToArray()) w[key] = w[key].to(float32);
        });
        using var half = UNet2DConditionModel.FromPretrained(Fixture("sd1-tiny"));
        using var single = UNet2DConditionModel.FromPretrained(folder);
        var io = Io("sd1-tiny");
        Assert.Equal(0.0, (Run(half, io) - Run(single, io)).abs().max().item<float>());
    }

    [Fact]
    public void ATimestepForTheWholeBatchEqualsOnePerSample()
    {
        using var scope = NewDisposeScope();
        using var network = UNet2DConditionModel.FromPretrained(Fixture("sd-variants"));
        var io = Io("sd-variants");
        using var noGrad = no_grad();
        var perSample = network.forward(io["sample"], full(2, 999.0f), io["encoder_hidden_states"]);
        var scalar = network.forward(io["sample"], tensor(999.0f), io["encoder_hidden_states"]);
        var integer = network.forward(io["sample"], tensor(new long[] { 999 }), io["encoder_hidden_states"]);
        Assert.Equal(0.0, (perSample - scalar).abs().max().item<float>());
        Assert.Equal(0.0, (perSample - integer).abs().max().item<float>());
    }

    // diffusers v0.21 refuses num_attention_heads; later versions take it as the number of heads, attention_head_dim
    // then being ignored by these blocks. Here it has that meaning: the sd1-tiny network with its 8 heads named so.
    [Fact]
    public void NumAttentionHeadsNamesTheHeadsAttentionHeadDimNamesWhenItIsNull()
    {
        using var scope = NewDisposeScope();
        string folder = Copy("sd1-tiny");
        EditConfig(folder, c => c.Replace("\"attention_head_dim\": 8", "\"attention_head_dim\": 2").Replace("\"num_attention_heads\": null", "\"num_attention_heads\": 8"));
        using var network = UNet2DConditionModel.FromPretrained(folder);
        var io = Io("sd1-tiny");
        double error = Error(Run(network, io), io["output"]);
        Assert.True(error <= 1e-4, $"largest difference is {error:E2} of the largest output");

        string wrong = Copy("sd1-tiny");
        EditConfig(wrong, c => c.Replace("\"attention_head_dim\": 8", "\"attention_head_dim\": 2"));
        using var twoHeads = UNet2DConditionModel.FromPretrained(wrong);   // same shapes, other heads: another output
        Assert.True(Error(Run(twoHeads, io), io["output"]) > 1e-3);
    }

    [Fact]
    public void MissingExtraAndMisShapedTensorsAreNamed()
    {
        string lacking = Copy("sd-variants");
        EditWeights(lacking, w => w.Remove("mid_block.attentions.0.transformer_blocks.1.attn2.to_k.weight"));
        var lackingError = Assert.Throws<CheckpointFormatException>(() => UNet2DConditionModel.FromPretrained(lacking));
        Assert.Contains("lacks mid_block.attentions.0.transformer_blocks.1.attn2.to_k.weight", lackingError.Message);
        Assert.Contains(UNet2DConditionModel.WeightsFile, lackingError.Message);

        string extra = Copy("sd-variants");
        EditWeights(extra, w => w["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias"] = zeros(8));
        Assert.Contains("the network has no down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias",
            Assert.Throws<CheckpointFormatException>(() => UNet2DConditionModel.FromPretrained(extra)).Message);

        string shape = Copy("sd-variants");
        EditWeights(shape, w => w["up_blocks.2.attentions.0.proj_in.weight"] = zeros(8, 8));
        Assert.Contains("'up_blocks.2.attentions.0.proj_in.weight' has shape [8, 8] but the network's 'up_blocks.2.attentions.0.proj_in.weight' is [8, 8, 1, 1]",
            Assert.Throws<CheckpointFormatException>(() => UNet2DConditionModel.FromPretrained(shape)).Message);

        string noWeights = Copy("sd-variants");
        File.Delete(Path.Combine(noWeights, UNet2DConditionModel.WeightsFile));
        Assert.Contains(UNet2DConditionModel.WeightsFile, Assert.Throws<FileNotFoundException>(() => UNet2DConditionModel.FromPretrained(noWeights)).Message);
        Assert.Contains("diffusion_pytorch_model.fp16.safetensors", Assert.Throws<FileNotFoundException>(() => UNet2DConditionModel.FromPretrained(Fixture("sd1-tiny"), "fp16")).Message);
    }

    [Theory]
    [InlineData("\"addition_embed_type\": null", "\"addition_embed_type\": \"text_time\"", "addition_embed_type", "\"text_time\": this is an SDXL UNet")]
    [InlineData("\"addition_embed_type\": null", "\"addition_embed_type\": \"text\"", "addition_embed_type", "\"text\"")]
    [InlineData("\"class_embed_type\": null", "\"class_embed_type\": \"timestep\"", "class_embed_type", "\"timestep\"")]
    [InlineData("\"num_class_embeds\": null", "\"num_class_embeds\": 10", "num_class_embeds", "10")]
    [InlineData("\"time_cond_proj_dim\": null", "\"time_cond_proj_dim\": 256", "time_cond_proj_dim", "256")]
    [InlineData("\"conv_in_kernel\": 3", "\"conv_in_kernel\": 7", "conv_in_kernel", "7")]
    [InlineData("\"dual_cross_attention\": false", "\"dual_cross_attention\": true", "dual_cross_attention", "true")]
    [InlineData("\"time_embedding_type\": \"positional\"", "\"time_embedding_type\": \"fourier\"", "time_embedding_type", "\"fourier\"")]
    [InlineData("\"encoder_hid_dim\": null", "\"encoder_hid_dim\": 1024", "encoder_hid_dim", "1024")]
    [InlineData("\"mid_block_type\": \"UNetMidBlock2DCrossAttn\"", "\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\"", "mid_block_type", "\"UNetMidBlock2DSimpleCrossAttn\"")]
    [InlineData("\"CrossAttnDownBlock2D\"", "\"SimpleCrossAttnDownBlock2D\"", "down_block_types", "\"SimpleCrossAttnDownBlock2D\"")]
    [InlineData("\"act_fn\": \"silu\"", "\"act_fn\": \"tanh\"", "act_fn", "\"tanh\"")]
    [InlineData("\"layers_per_block\": 2", "\"layers_per_block\": [2, 2, 2]", "layers_per_block", "3 entries")]
    [InlineData("\"layers_per_block\": 2", "\"layers_per_block\": \"two\"", "layers_per_block", "\"two\"")]
    [InlineData("\"cross_attention_dim\": 32", "\"cross_attention_dim\": [32, 64]", "cross_attention_dim", "[32,64]")]
    [InlineData("\"attention_head_dim\": 8", "\"attention_head_dim\": 128", "attention_head_dim", "128 heads")]
    [InlineData("\"use_linear_projection\": false", "\"use_linear_projection\": false, \"some_future_setting\": 1", "some_future_setting", "1")]
    public void AnUnsupportedConfigurationIsRefusedNamingTheFieldAndValue(string field, string replacement, string name, string value)
    {
        string folder = Copy("sd1-tiny");
        EditConfig(folder, c => c.Replace(field, replacement));
        var error = Assert.Throws<ArgumentException>(() => UNet2DConditionModel.FromPretrained(folder));
        Assert.Contains(name, error.Message);
        Assert.Contains(value, error.Message);
        Assert.Contains("config.json", error.Message);
    }

    [Fact]
    public void SdxlIsNamedAsSuchWhateverElseItsConfigurationHolds()
    {
        const string sdxl = """
            {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
             "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
             "cross_attention_dim": 2048, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "in_channels": 4, "layers_per_block": 2, "projection_class_embeddings_input_dim": 2816,
             "transformer_layers_per_block": [1, 2, 10], "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "upcast_attention": null, "use_linear_projection": true}
            """;
        var error = Assert.Throws<ArgumentException>(() => UNet2DConditionModelConfig.Read(sdxl, "sdxl/config.json"));
        Assert.Contains("sdxl/config.json: addition_embed_type is \"text_time\": this is an SDXL UNet", error.Message);
        Assert.Contains("not supported yet", error.Message);
    }

    // The unet/config.json files of the Stable Diffusion 1.5 and 2.1 releases, as they were published (diffusers 0.6
    // and 0.10 wrote them, so most fields are absent and take diffusers' defaults).
    internal const string StableDiffusion15Config = """
        {
          "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu", "attention_head_dim": 8,
          "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
          "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
          "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
          "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        }
        """;

    internal const string StableDiffusion21Config = """
        {
          "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
          "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 1024,
          "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
          "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
          "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": null,
          "only_cross_attention": false, "out_channels": 4, "sample_size": 96,
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
          "upcast_attention": true, "use_linear_projection": true
        }
        """;

    [Fact]
    public void TheStableDiffusionReleasesConfigurationsRead()
    {
        var sd15 = UNet2DConditionModelConfig.Read(StableDiffusion15Config, "sd15");
        Assert.Equal(768, sd15.CrossAttentionDim);
        Assert.Equal([8, 8, 8, 8], Enumerable.Range(0, 4).Select(sd15.HeadsAt));
        Assert.False(sd15.UseLinearProjection);
        Assert.Equal(1280, sd15.TimeEmbedDim);
        var sd21 = UNet2DConditionModelConfig.Read(StableDiffusion21Config, "sd21");
        Assert.Equal(1024, sd21.CrossAttentionDim);
        Assert.Equal([5, 10, 20, 20], Enumerable.Range(0, 4).Select(sd21.HeadsAt));
        Assert.True(sd21.UseLinearProjection);
        Assert.True(sd21.UpcastAttention);
        Assert.False(UNet2DConditionModelConfig.Read(StableDiffusion21Config.Replace("\"upcast_attention\": true", "\"upcast_attention\": null"), "sd21").UpcastAttention);
    }

    // The real networks' sizes (860 M parameters, 3.4 GB each in float32): set MLDIFFUSION_SD_ARCHITECTURE=1 to build them.
    [SkippableFact]
    public void TheStableDiffusionReleasesHaveDiffusersParameterCounts()
    {
        Skip.If(Environment.GetEnvironmentVariable("MLDIFFUSION_SD_ARCHITECTURE") != "1",
            "Set MLDIFFUSION_SD_ARCHITECTURE=1 to build Stable Diffusion 1.5's and 2.1's UNets (3.4 GB each) and count their parameters.");
        foreach (var (config, count) in new[] { (StableDiffusion15Config, 859_520_964L), (StableDiffusion21Config, 865_910_724L) })
        {
            using var network = new UNet2DConditionModel(UNet2DConditionModelConfig.Read(config, "config"));
            Assert.Equal(count, network.parameters().Sum(p => p.numel()));
        }
    }

    [Fact]
    public void AttentionsFusedKernelEqualsDiffusersMath()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var attention = new Attention(64, 32, 8, 8, 0.0, upcast: false);
        attention.eval();
        var x = randn(2, 50, 64);
        var context = randn(2, 77, 32);
        using var noGrad = no_grad();
        var fused = attention.forward(x, context);
        var state = attention.state_dict();
        Tensor Heads(Tensor t) => t.view(2, -1, 8, 8).transpose(1, 2);
        var q = Heads(x.matmul(state["to_q.weight"].t()));
        var k = Heads(context.matmul(state["to_k.weight"].t()));
        var v = Heads(context.matmul(state["to_v.weight"].t()));
        var probabilities = (q.matmul(k.transpose(-1, -2)) * (1 / Math.Sqrt(8))).softmax(-1);
        var math = probabilities.matmul(v).transpose(1, 2).reshape(2, 50, 64).matmul(state["to_out.0.weight"].t()) + state["to_out.0.bias"];
        double error = (fused - math).abs().max().item<float>();
        Assert.True(error < 1e-6, $"largest difference {error:E2}");   // 6e-8 here, on outputs up to 0.25
    }

    [Fact]
    public void UpcastAttentionInHalfPrecisionComputesScoresInFloat32()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var attention = new Attention(64, null, 2, 32, 0.0, upcast: true);
        attention.eval();
        var x = randn(1, 16, 64);
        using var noGrad = no_grad();
        var reference = attention.forward(x, null);
        attention.to(float16);
        var half = attention.forward(x.to(float16), null).to(float32);
        double error = ((half - reference).abs().max() / reference.abs().max()).item<float>();
        Assert.True(error < 1e-2, $"float16: largest difference {error:E2} of the largest output");

        // Queries and keys whose products pass float16's largest value (65504): float32 scores keep them finite.
        var state = attention.state_dict();
        state["to_q.weight"].mul_(200);
        state["to_k.weight"].mul_(200);
        var large = attention.forward(x.to(float16), null);
        Assert.True(large.isfinite().all().item<bool>(), "float16 attention scores overflowed");
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
