using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Interchange.SingleFile;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// StableDiffusionSingleFile.Load on whole tiny single files (TestData/StableDiffusion/single-file/make_load_fixtures.py):
/// an SD 1.x .ckpt and an SD 2.x float16 .safetensors load into networks whose tensors are, name for name, the ones
/// diffusers v0.21.4's convert_from_ckpt.py gives, and which compute what diffusers computes (errors relative to the
/// reference's largest magnitude); the configs, the scheduler and the refusals follow diffusers' from_single_file.
/// </summary>
public sealed class SingleFileLoadTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;

    // The tiny networks' choices (SD: 32 groups, 8 heads or heads of 64 channels, text heads of 64).
    private static readonly LdmArchitectureChoices Tiny = new(NormGroups: 2, StableDiffusion1Heads: 2, StableDiffusion2HeadChannels: 4, TextHeadWidth: 8);

    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-sfload-").FullName;

    private static string Data(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "TestData", "StableDiffusion", .. parts]);

    private static string Fixture(string name) => Data("single-file", name);

    private static string TokenizerFolder => Data("tokenizer", "tokenizer-small");

    private static readonly JsonObject Record = (JsonObject)JsonNode.Parse(File.ReadAllText(Fixture("load.json")))!;

    private static Dictionary<string, Tensor> Io() => SafeTensors.Read(File.ReadAllBytes(Fixture("load-io.safetensors")), "load-io");

    private static string FileOf(string family) => Fixture(family == "sd1" ? "sd1-tiny.ckpt" : "sd2-tiny.safetensors");

    private static ITensorFile OpenFile(string path) =>
        path.EndsWith(".ckpt", StringComparison.Ordinal) ? TorchCheckpointFile.Open(path) : SafeTensorsFile.Open(path);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private double Compare(Tensor actual, Tensor expected, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double absolute = (actual - expected).abs().max().item<float>();
        double relative = absolute / expected.abs().max().item<float>();
        output.WriteLine($"{what}: largest difference {absolute:E2} ({relative:E2} of the largest value)");
        Assert.True(relative <= Tolerance, $"{what}: largest difference is {relative:E2} of the largest value");
        return relative;
    }

    // Every module tensor is the file tensor diffusers' converter names so, bit for bit.
    private static void AssertSameAsDiffusers(TorchSharp.torch.nn.Module module, ITensorFile file, JsonObject mapping, string what)
    {
        var state = module.state_dict();
        Assert.Equal(mapping.Count, state.Count);
        foreach (var (ldm, node) in mapping)
        {
            string name = node!.GetValue<string>();
            Assert.True(state.ContainsKey(name), $"{what} has no {name}");
            using var stored = file.Read(ldm, ScalarType.Float32);
            Assert.True(stored.reshape(state[name].shape).equal(state[name]).all().item<bool>(), $"{what}: {name} differs from {ldm}");
        }
    }

    [Theory]
    [InlineData("sd1")]
    [InlineData("sd2")]
    public void Load_GivesDiffusersTensorsAndForwards(string family)
    {
        using var parts = StableDiffusionSingleFile.Load(FileOf(family), TokenizerFolder, null, Tiny);
        using var file = OpenFile(FileOf(family));
        var record = (JsonObject)Record[family]!;
        Assert.Equal(family == "sd1" ? "Stable Diffusion 1.x" : "Stable Diffusion 2.x", parts.Family);
        AssertSameAsDiffusers(parts.UNet, file, (JsonObject)record["convert_from_ckpt_unet"]!, "UNet");
        AssertSameAsDiffusers(parts.Autoencoder, file, (JsonObject)record["convert_from_ckpt_vae"]!, "VAE");

        // The text encoder: SD 1.x's as transformers stores it; SD 2.x's the same weights without the last layer.
        string textFolder = Data("text_encoder", family == "sd1" ? "quick_gelu" : "gelu");
        var expected = SafeTensors.Read(File.ReadAllBytes(Path.Combine(textFolder, "model.safetensors")), "text");
        var state = parts.TextModel.state_dict();
        Assert.Equal(family == "sd1" ? 5 : 4, parts.TextModel.Config.NumHiddenLayers);
        Assert.Equal(family == "sd1" ? "quick_gelu" : "gelu", parts.TextModel.Config.HiddenAct);
        Assert.Equal(4, parts.TextModel.Config.NumAttentionHeads);
        // Every tensor but the position-index buffer (SD 1.x), or but those and the last layer's (SD 2.x).
        int kept = expected.Keys.Count(k => k != "text_model.embeddings.position_ids"
                                            && (family == "sd1" || !k.StartsWith("text_model.encoder.layers.4.", StringComparison.Ordinal)));
        Assert.Equal(kept, state.Count);
        // The SD 2.x file stores float16: the expected values are the float32 ones rounded to it.
        foreach (var (name, value) in state)
        {
            using var want = family == "sd1" ? expected[name].alias() : expected[name].to(ScalarType.Float16).to(ScalarType.Float32);
            Assert.True(value.equal(want).all().item<bool>(), $"text encoder: {name} differs");
        }
        Assert.Equal(0, parts.SkipLayers);

        var io = Io();
        using (no_grad())
        {
            using var unetOut = parts.UNet.forward(io["sample"], io["timestep"], io["context"]);
            Compare(unetOut, io[$"{family}_unet_output"], $"{family} UNet");
            using var posterior = parts.Autoencoder.Encode(io["image"]);
            Compare(posterior.Mean, io[$"{family}_vae_mean"], $"{family} VAE encode");
            using var decoded = parts.Autoencoder.Decode(io["latents"]);
            Compare(decoded, io[$"{family}_vae_decoded"], $"{family} VAE decode");
        }
    }

    [Theory]
    [InlineData("sd1")]
    [InlineData("sd2")]
    public void Load_UNetConfigIsDiffusersAndReadsBack(string family)
    {
        using var parts = StableDiffusionSingleFile.Load(FileOf(family), TokenizerFolder, null, Tiny);
        var read = UNet2DConditionModelConfig.Read(parts.UNetConfigJson, "UNetConfigJson");
        Assert.Equal(parts.UNetConfigJson, StableDiffusionSingleFile.WriteUNetConfig(read));
        Assert.Equal(parts.UNetConfigJson, StableDiffusionSingleFile.WriteUNetConfig(parts.UNet.Config));

        // The configuration the fixture's diffusers UNet was built with, at the loader's sample size: 512 pixels (SD 1.x)
        // or 768 (SD 2.x v-prediction), over the autoencoder's 8.
        var diffusers = (JsonObject)Record[family]!["unet_config"]!.DeepClone();
        diffusers["sample_size"] = family == "sd1" ? 64 : 96;
        diffusers.Remove("_use_default_values");
        var expected = UNet2DConditionModelConfig.Read(diffusers.ToJsonString(), "load.json");
        Assert.Equal(StableDiffusionSingleFile.WriteUNetConfig(expected), parts.UNetConfigJson);
        Assert.Equal(0.18215, parts.Autoencoder.ScalingFactor);
    }

    [Theory]
    [InlineData("sd1", PredictionType.Epsilon)]
    [InlineData("sd2", PredictionType.VPrediction)]
    public void Load_SchedulerIsDiffusersDefaultPndm(string family, PredictionType prediction)
    {
        using var parts = StableDiffusionSingleFile.Load(FileOf(family), TokenizerFolder, null, Tiny);
        var diffusers = DiffusersSchedulerConfig.Read(Record[family]!["scheduler"]!.ToJsonString(), "load.json");
        Assert.Equal("PNDMScheduler", diffusers.ClassName);
        Assert.Equal(SamplerName.Pndm, parts.Sampler);
        Assert.Equal((SamplerName)diffusers.Sampler, parts.Sampler);
        Assert.Equal(diffusers.Schedule, parts.Schedule);
        Assert.Equal(diffusers.Options, parts.SamplerOptions);
        Assert.Equal(prediction, parts.Prediction);
        Assert.Equal(NoiseScheduleKind.ScaledLinear, parts.Schedule.Kind);
        Assert.Equal((0.00085, 0.012, 1000), (parts.Schedule.BetaStart, parts.Schedule.BetaEnd, parts.Schedule.TrainSteps));
        Assert.Equal(1, parts.SamplerOptions.StepsOffset);
        Assert.NotNull(parts.DiffusersScheduler);
        Assert.Equal(diffusers, DiffusersSchedulerConfig.Read(parts.DiffusersScheduler!, "parts"));
    }

    [Fact]
    public void Load_PredictionCanBeGiven()
    {
        using var parts = StableDiffusionSingleFile.Load(FileOf("sd2"), TokenizerFolder, LdmPrediction.Epsilon, Tiny);
        Assert.Equal(PredictionType.Epsilon, parts.Prediction);
        Assert.Equal(PredictionType.Epsilon, parts.SamplerOptions.Prediction);
    }

    [Theory]
    [InlineData("sd15", "[320,640,1280,1280]", "8", false)]
    [InlineData("sd21", "[320,640,1280,1280]", "[5,10,20,20]", true)]
    public void UNetConfig_OfRealArchitectures_IsDiffusers(string name, string channels, string heads, bool linear)
    {
        var architecture = JsonNode.Parse(File.ReadAllText(Fixture("architectures.json")))![name]!;
        var shapes = ((JsonObject)architecture["shapes"]!).ToDictionary(kv => kv.Key, kv => kv.Value!.AsArray().Select(d => d!.GetValue<long>()).ToArray());
        var family = StableDiffusionFamily.Detect(shapes, name);
        var config = StableDiffusionSingleFile.UNetConfig(family, LdmArchitectureChoices.StableDiffusion);
        var json = JsonNode.Parse(StableDiffusionSingleFile.WriteUNetConfig(config))!;
        Assert.Equal(channels, json["block_out_channels"]!.ToJsonString());
        Assert.Equal(heads, json["attention_head_dim"]!.ToJsonString());
        Assert.Equal(linear, json["use_linear_projection"]!.GetValue<bool>());
        Assert.Equal(32, config.NormNumGroups);
        Assert.Equal(name == "sd15" ? 768 : 1024, config.CrossAttentionDim);
        Assert.Equal(name == "sd15" ? 64 : 96, config.SampleSize);
        var vae = StableDiffusionSingleFile.VaeConfig(family, LdmArchitectureChoices.StableDiffusion);
        Assert.Equal([128, 256, 512, 512], vae.BlockOutChannels);
        Assert.Equal(2, vae.LayersPerBlock);
        using var model = new UNet2DConditionModel(config with { BlockOutChannels = [32, 32, 32, 32], CrossAttentionDim = 8, AttentionHeadDim = [1] });
    }

    // A copy of the SD 2.x file with its tensors edited.
    private string Rewrite(Action<Dictionary<string, Tensor>> edit)
    {
        var tensors = SafeTensors.Read(File.ReadAllBytes(FileOf("sd2")), "sd2");
        edit(tensors);
        string path = Path.Combine(_folder, Guid.NewGuid().ToString("N") + ".safetensors");
        File.WriteAllBytes(path, SafeTensors.Write(tensors.Select(kv => (kv.Key, kv.Value))));
        return path;
    }

    [Fact]
    public void Load_RefusesSdxlNamingIt()
    {
        string path = Rewrite(t => t["conditioner.embedders.1.model.token_embedding.weight"] = zeros(10, 32));
        var e = Assert.Throws<NotSupportedException>(() => StableDiffusionSingleFile.Load(path, TokenizerFolder, null, Tiny));
        output.WriteLine(e.Message);
        Assert.Contains("Stable Diffusion XL", e.Message);
    }

    [Fact]
    public void Load_UnknownKey_IsAnErrorNamingIt()
    {
        string path = Rewrite(t => t["some_adapter.weight"] = zeros(2));
        var e = Assert.Throws<CheckpointFormatException>(() => StableDiffusionSingleFile.Load(path, TokenizerFolder, null, Tiny));
        output.WriteLine(e.Message);
        Assert.Contains("some_adapter.weight", e.Message);
    }

    [Fact]
    public void Load_MissingTokenizer_SaysWhereToGetOne()
    {
        string missing = Path.Combine(_folder, "no-tokenizer");
        var e = Assert.Throws<DirectoryNotFoundException>(() => StableDiffusionSingleFile.Load(FileOf("sd1"), missing, null, Tiny));
        output.WriteLine(e.Message);
        Assert.Contains(missing, e.Message);
        Assert.Contains("holds no tokenizer", e.Message);
        Assert.Contains("tokenizer/ folder", e.Message);
        Assert.Contains("vocab.json", e.Message);
    }

    [Fact]
    public void Load_TruncatedFile_NamesTheTensor()
    {
        byte[] bytes = File.ReadAllBytes(FileOf("sd2"));
        string path = Path.Combine(_folder, "truncated.safetensors");
        File.WriteAllBytes(path, bytes[..^100]);
        var e = Assert.ThrowsAny<Exception>(() => StableDiffusionSingleFile.Load(path, TokenizerFolder, null, Tiny));
        output.WriteLine(e.Message);
        Assert.IsType<CheckpointFormatException>(e);
        var named = System.Text.RegularExpressions.Regex.Match(e.Message, "is truncated: tensor '([^']+)'");
        Assert.True(named.Success, e.Message);
        using var file = SafeTensorsFile.Open(FileOf("sd2"));
        Assert.Contains(named.Groups[1].Value, file.Names);
    }

    [Fact]
    public void Load_StableDiffusionChoices_RefuseTheTinyNetworks()
    {
        // The tiny networks' 4 channels do not split into SD's 32 groups: SD's own choices are what Load uses.
        var e = Assert.Throws<CheckpointFormatException>(() => StableDiffusionSingleFile.Load(FileOf("sd1"), TokenizerFolder));
        output.WriteLine(e.Message);
        Assert.Contains("norm_num_groups", e.Message);
    }
}
