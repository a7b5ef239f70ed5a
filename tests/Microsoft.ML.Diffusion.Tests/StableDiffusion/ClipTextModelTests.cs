using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange.SingleFile;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// transformers' CLIPTextModel: the fixtures openai/CLIP's own model code computed (TestData/StableDiffusion/text_encoder)
/// load from transformers' names and from an SD 2.x single file's OpenCLIP names and give CLIP's outputs.
/// </summary>
public sealed class ClipTextModelTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;   // absolute; the outputs range to about 3.7
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-clip-").FullName;

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "text_encoder", name);

    private static Dictionary<string, Tensor> Read(string path) => SafeTensors.Read(File.ReadAllBytes(path), path);

    private static Dictionary<string, Tensor> Io(string name) => Read(Path.Combine(Fixture(name), "io.safetensors"));

    private static double MaxError(Tensor actual, Tensor expected)
    {
        Assert.Equal(expected.shape, actual.shape);
        return (actual - expected).abs().max().item<float>();
    }

    // A copy of a fixture folder to spoil.
    private string Copy(string name = "quick_gelu")
    {
        string folder = Path.Combine(_folder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(Fixture(name))) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    private static void EditConfig(string folder, Func<string, string> edit)
    {
        string path = Path.Combine(folder, "config.json");
        File.WriteAllText(path, edit(File.ReadAllText(path)));
    }

    private static void EditWeights(string folder, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(folder, "model.safetensors");
        var weights = Read(path);
        edit(weights);
        File.WriteAllBytes(path, SafeTensors.Write(weights.Select(kv => (kv.Key, kv.Value))));
    }

    [Theory]
    [InlineData("quick_gelu")]   // SD 1.x's activation (openai CLIP); the file holds the old position_ids buffer
    [InlineData("gelu")]         // SD 2.x's (OpenCLIP ViT-H)
    public void ATransformersFolderGivesClipsLastHiddenStateAndPooledOutput(string name)
    {
        using var scope = NewDisposeScope();
        using var model = ClipTextEncoderFolder.Load(Fixture(name));
        var io = Io(name);
        using var noGrad = no_grad();
        var (hidden, pooled) = model.Encode(io["input_ids"]);
        double hiddenError = MaxError(hidden, io["last_hidden_state"]);
        double pooledError = MaxError(pooled, io["pooled"]);
        double forwardError = MaxError(model.forward(io["input_ids"]), io["last_hidden_state"]);
        output.WriteLine($"{name}: last hidden state {hiddenError:E2}, pooled {pooledError:E2}, forward {forwardError:E2}");
        Assert.True(hiddenError <= Tolerance, $"last hidden state differs by {hiddenError:E2}");
        Assert.True(pooledError <= Tolerance, $"pooled output differs by {pooledError:E2}");
        Assert.True(forwardError <= Tolerance, $"forward differs by {forwardError:E2}");
    }

    [Theory]
    [InlineData("quick_gelu")]
    [InlineData("gelu")]
    public void SkippingTheLastLayerGivesThePenultimateOutputAndKeepsThePooledOutput(string name)
    {
        using var scope = NewDisposeScope();
        using var model = ClipTextEncoderFolder.Load(Fixture(name));
        var io = Io(name);
        using var noGrad = no_grad();
        var (hidden, pooled) = model.Encode(io["input_ids"], skipLayers: 1);
        double error = MaxError(hidden, io["penultimate"]);
        output.WriteLine($"{name}: penultimate {error:E2}");
        Assert.True(error <= Tolerance, $"penultimate output differs by {error:E2}");
        Assert.True(MaxError(pooled, io["pooled"]) <= Tolerance, "the pooled output is the whole model's");
        Assert.True(MaxError(hidden, io["last_hidden_state"]) > 0.1, "skipping a layer changes the output");

        model.SkipLayers = 1;
        Assert.True(MaxError(model.forward(io["input_ids"]), io["penultimate"]) <= Tolerance);

        // Without final_layer_norm (SDXL's hidden_states[-2]) the output is not normalised, so it differs.
        var raw = model.Encode(io["input_ids"], skipLayers: 1, finalLayerNorm: false).HiddenState;
        Assert.True(MaxError(raw, io["penultimate"]) > 0.1);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.SkipLayers = 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Encode(io["input_ids"], skipLayers: -1));
    }

    [Fact]
    public void APyTorchPickleLoadsTheSameAsSafetensors()
    {
        string folder = Copy();
        File.Delete(Path.Combine(folder, "model.safetensors"));
        using var scope = NewDisposeScope();
        using var model = ClipTextEncoderFolder.Load(folder);
        var io = Io("quick_gelu");
        using var noGrad = no_grad();
        Assert.True(MaxError(model.forward(io["input_ids"]), io["last_hidden_state"]) <= Tolerance);
    }

    [Theory]
    [InlineData("quick_gelu")]
    [InlineData("gelu")]
    public void AnOpenClipStateDictMapsToTheTransformersTensorsUsingEveryTextKey(string name)
    {
        using var scope = NewDisposeScope();
        var single = Read(Path.Combine(Fixture(name), "openclip.safetensors"));
        var transformers = Read(Path.Combine(Fixture(name), "model.safetensors"));
        transformers.Remove(ClipTextEncoderFolder.PositionIdsKey);

        Assert.Equal(5, OpenClipTextKeys.LayerCount(single));
        var mapped = OpenClipTextKeys.ToTransformers(single);
        Assert.Equal(transformers.Keys.Order(), mapped.Keys.Order());
        foreach (var (key, expected) in transformers)
            Assert.True(mapped[key].shape.SequenceEqual(expected.shape) && mapped[key].eq(expected).all().item<bool>(), $"{key} differs");

        // Every text key of the single file is used: each tensor under the prefix that is not the projection, the logit
        // scale or the vision tower is in the mapping (the q/k/v stacks as three parts).
        var text = single.Keys.Where(k => k.StartsWith(OpenClipTextKeys.StableDiffusion2Prefix) && !k.Contains(".visual.")
            && !k.EndsWith("text_projection") && !k.EndsWith("logit_scale")).ToArray();
        long textElements = text.Sum(k => single[k].numel());
        Assert.Equal(textElements, mapped.Values.Sum(t => t.numel()));
        Assert.Equal(text.Count(k => !k.Contains("in_proj_")) + 3 * text.Count(k => k.Contains("in_proj_")), mapped.Count);

        // The mapped weights load with the config the file's shapes give (head width 8 here) and give CLIP's outputs.
        var fromJson = ClipTextConfig.Read(File.ReadAllText(Path.Combine(Fixture(name), "config.json")), "config.json");
        var inferred = OpenClipTextKeys.InferConfig(single, hiddenAct: fromJson.HiddenAct, headWidth: 8);
        Assert.Equal(fromJson with { ProjectionDim = 16 }, inferred);
        using var model = ClipTextEncoderFolder.Create(inferred, mapped, "openclip.safetensors");
        var io = Io(name);
        using var noGrad = no_grad();
        Assert.True(MaxError(model.forward(io["input_ids"]), io["last_hidden_state"]) <= Tolerance);
    }

    [Fact]
    public void KeepingAllButTheLastResblockIsDiffusersPenultimateModel()
    {
        // diffusers stores SD 2.x's text encoder with 23 of OpenCLIP's 24 layers and runs it whole.
        using var scope = NewDisposeScope();
        var single = Read(Path.Combine(Fixture("gelu"), "openclip.safetensors"));
        var mapped = OpenClipTextKeys.ToTransformers(single, layers: 4);
        Assert.DoesNotContain(mapped.Keys, k => k.StartsWith("text_model.encoder.layers.4."));
        var config = OpenClipTextKeys.InferConfig(single, layers: 4, hiddenAct: "gelu", headWidth: 8);
        Assert.Equal(4, config.NumHiddenLayers);
        using var model = ClipTextEncoderFolder.Create(config, mapped, "openclip.safetensors");
        var io = Io("gelu");
        using var noGrad = no_grad();
        Assert.True(MaxError(model.forward(io["input_ids"]), io["penultimate"]) <= Tolerance);
        Assert.Throws<ArgumentOutOfRangeException>(() => OpenClipTextKeys.ToTransformers(single, layers: 6));
    }

    [Fact]
    public void AnOpenClipStateDictWithAMissingOrUnknownTextKeyFailsNamingIt()
    {
        using var scope = NewDisposeScope();
        const string prefix = OpenClipTextKeys.StableDiffusion2Prefix;
        Dictionary<string, Tensor> Single() => Read(Path.Combine(Fixture("gelu"), "openclip.safetensors"));

        var lacking = Single();
        lacking.Remove(prefix + "transformer.resblocks.2.mlp.c_proj.bias");
        Assert.Contains(prefix + "transformer.resblocks.2.mlp.c_proj.bias",
            Assert.Throws<CheckpointFormatException>(() => OpenClipTextKeys.ToTransformers(lacking, source: "v2.safetensors")).Message);

        var unknown = Single();
        unknown[prefix + "transformer.resblocks.0.attn.extra"] = zeros(3);
        var unknownError = Assert.Throws<CheckpointFormatException>(() => OpenClipTextKeys.ToTransformers(unknown, source: "v2.safetensors"));
        Assert.Contains(prefix + "transformer.resblocks.0.attn.extra", unknownError.Message);
        Assert.Contains("v2.safetensors", unknownError.Message);

        var badStack = Single();
        badStack[prefix + "transformer.resblocks.1.attn.in_proj_weight"] = zeros(64, 32);
        Assert.Contains("in_proj_weight of shape [64, 32]", Assert.Throws<CheckpointFormatException>(() => OpenClipTextKeys.ToTransformers(badStack)).Message);

        Assert.Contains("no OpenCLIP text encoder under 'conditioner.embedders.1.model.'",
            Assert.Throws<CheckpointFormatException>(() => OpenClipTextKeys.ToTransformers(Single(), "conditioner.embedders.1.model.")).Message);
    }

    [Fact]
    public void PoolingFollowsTransformersEndTokenRule()
    {
        using var scope = NewDisposeScope();
        var io = Io("quick_gelu");
        var weights = Read(Path.Combine(Fixture("quick_gelu"), "model.safetensors"));
        var legacy = ClipTextConfig.Read(File.ReadAllText(Path.Combine(Fixture("quick_gelu"), "config.json")), "config.json");
        using var noGrad = no_grad();

        // eos_token_id 999, the fixture's end token: pooled at its first occurrence, as CLIP's argmax does.
        using var byId = ClipTextEncoderFolder.Create(legacy with { EosTokenId = 999 }, weights, "model.safetensors");
        Assert.True(MaxError(byId.Encode(io["input_ids"]).Pooled, io["pooled"]) <= Tolerance);

        // eos_token_id 998 (the start token here): pooled at position 0, where it is, not at the largest id.
        using var atStart = ClipTextEncoderFolder.Create(legacy with { EosTokenId = 998 }, weights, "model.safetensors");
        var (hidden, pooled) = atStart.Encode(io["input_ids"]);
        Assert.True(MaxError(pooled, hidden[.., 0]) == 0);
    }

    [Fact]
    public void ShorterSequencesAndInt32IdsAreTakenBadIdsAreNot()
    {
        using var scope = NewDisposeScope();
        using var model = ClipTextEncoderFolder.Load(Fixture("quick_gelu"));
        var io = Io("quick_gelu");
        var ids = io["input_ids"];
        using var noGrad = no_grad();
        // Causal attention: the first 20 tokens' states do not depend on what follows them.
        var prefix = model.forward(ids[.., ..20].to(int32));
        Assert.True(MaxError(prefix, io["last_hidden_state"][.., ..20]) <= Tolerance);

        Assert.Contains("shape [154]", Assert.Throws<ArgumentException>(() => model.forward(ids.view(-1))).Message);
        Assert.Contains("Float32", Assert.Throws<ArgumentException>(() => model.forward(ids.to(float32))).Message);
        Assert.Contains("length 78", Assert.Throws<ArgumentException>(() => model.forward(cat([ids, ids[.., ..1]], 1))).Message);
        Assert.Contains("ids 0 to 999", Assert.Throws<ArgumentException>(() => model.forward(ids + 1)).Message);
    }

    [Fact]
    public void BadFoldersAndConfigsFailNamingTheFileAndTheFieldOrTensor()
    {
        var missing = Assert.Throws<DirectoryNotFoundException>(() => ClipTextEncoderFolder.Load(Path.Combine(_folder, "nowhere")));
        Assert.Contains("nowhere", missing.Message);

        string noConfig = Copy();
        File.Delete(Path.Combine(noConfig, "config.json"));
        Assert.Contains("has no config.json", Assert.Throws<FileNotFoundException>(() => ClipTextEncoderFolder.Load(noConfig)).Message);

        string noWeights = Copy();
        File.Delete(Path.Combine(noWeights, "model.safetensors"));
        File.Delete(Path.Combine(noWeights, "pytorch_model.bin"));
        Assert.Contains("neither model.safetensors nor pytorch_model.bin", Assert.Throws<FileNotFoundException>(() => ClipTextEncoderFolder.Load(noWeights)).Message);

        void ConfigFails(Func<string, string> edit, params string[] expected)
        {
            string folder = Copy();
            EditConfig(folder, edit);
            var error = Assert.Throws<CheckpointFormatException>(() => ClipTextEncoderFolder.Load(folder));
            Assert.Contains("config.json", error.Message);
            foreach (string part in expected) Assert.Contains(part, error.Message);
        }
        ConfigFails(c => c.Replace("\"quick_gelu\"", "\"relu\""), "hidden_act", "relu");
        ConfigFails(c => c.Replace("\"hidden_size\": 32", "\"hidden_size\": 30"), "hidden_size 30", "num_attention_heads 4");
        ConfigFails(c => c.Replace("\"num_hidden_layers\": 5", "\"num_hidden_layers\": \"five\""), "num_hidden_layers", "whole number");
        ConfigFails(c => c.Replace("\"clip_text_model\"", "\"clip_vision_model\""), "model_type", "clip_vision_model");
        ConfigFails(c => c.Replace("\"CLIPTextModel\"", "\"CLIPTextModelWithProjection\""), "CLIPTextModelWithProjection");
        ConfigFails(c => c[..^3], "not valid JSON");

        string shape = Copy();
        EditConfig(shape, c => c.Replace("\"intermediate_size\": 37", "\"intermediate_size\": 40"));
        Assert.Contains("'text_model.encoder.layers.0.mlp.fc1.weight' has shape [37, 32] but the network's 'text_model.encoder.layers.0.mlp.fc1.weight' is [40, 32]",
            Assert.Throws<CheckpointFormatException>(() => ClipTextEncoderFolder.Load(shape)).Message);

        string lacking = Copy();
        EditWeights(lacking, w => w.Remove("text_model.encoder.layers.3.self_attn.k_proj.bias"));
        var lackingError = Assert.Throws<CheckpointFormatException>(() => ClipTextEncoderFolder.Load(lacking));
        Assert.Contains("model.safetensors", lackingError.Message);
        Assert.Contains("text_model.encoder.layers.3.self_attn.k_proj.bias", lackingError.Message);

        string extra = Copy();
        EditWeights(extra, w => w["text_projection.weight"] = zeros(16, 32));
        Assert.Contains("text_projection.weight", Assert.Throws<CheckpointFormatException>(() => ClipTextEncoderFolder.Load(extra)).Message);

        string unprefixed = Copy();
        EditWeights(unprefixed, w =>
        {
            var t = w["text_model.final_layer_norm.weight"];
            w.Remove("text_model.final_layer_norm.weight");
            w["final_layer_norm.weight"] = t;
        });
        Assert.Contains("text_model.final_layer_norm.weight", Assert.Throws<CheckpointFormatException>(() => ClipTextEncoderFolder.Load(unprefixed)).Message);
    }

    [Fact]
    public void StableDiffusion15ConfigHas123060480ParametersAndEncodesABatchOfTwo()
    {
        using var scope = NewDisposeScope();
        var config = ClipTextConfig.StableDiffusion1;
        using var model = new ClipTextModel(config);
        model.eval();
        Assert.Equal(123_060_480, model.parameters().Sum(p => p.numel()));
        Assert.Equal(4 + 12 * 16, model.state_dict().Count);

        var ids = randint(0, config.VocabSize, [2, 77], dtype: int64);
        using var noGrad = no_grad();
        model.forward(ids).Dispose();   // warm-up
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (hidden, pooled) = model.Encode(ids);
        double seconds = clock.Elapsed.TotalSeconds;
        Assert.Equal([2L, 77, 768], hidden.shape);
        Assert.Equal([2L, 768], pooled.shape);
        output.WriteLine($"SD 1.5 text encoder: {model.parameters().Sum(p => p.numel()):N0} parameters; one forward at batch 2 on the CPU: {seconds * 1000:F0} ms ({get_num_threads()} threads)");
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
