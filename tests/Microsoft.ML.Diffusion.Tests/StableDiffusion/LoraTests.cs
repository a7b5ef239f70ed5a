using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// LoRA files fused into a Stable Diffusion model against diffusers v0.21.4 (TestData/StableDiffusion/lora,
/// make_lora_fixtures.py): the same rank-4 weights in diffusers' save_attn_procs layout, diffusers' unet./text_encoder.
/// layout, PEFT's and Kohya's (with alpha, plus ff, proj_in/proj_out and resnet convolutions) give diffusers' UNet output
/// at scale 0.7 and its fused text-encoder weights; unfusing restores the loaded weights bit for bit.
/// </summary>
public sealed class LoraTests : IDisposable
{
    private const double Scale = 0.7;
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-lora-").FullName;

    private static string Lora(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "lora", name + ".safetensors");

    private static DiffusionModel LoadModel() =>
        StableDiffusionFormat.Load(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd1-tiny"), CPU);

    private static Dictionary<string, Tensor> Expected() => SafeTensors.Read(File.ReadAllBytes(Lora("expected")), "expected.safetensors");

    private static UNet2DConditionModel UNet(DiffusionModel model) => ((UNet2DConditionNoisePredictor)model.Network).UNet;

    private static Tensor Run(DiffusionModel model, Dictionary<string, Tensor> io)
    {
        using var noGrad = no_grad();
        return UNet(model).forward(io["sample"], io["timestep"], io["encoder_hidden_states"]);
    }

    // The largest difference, relative to the expected output's largest magnitude.
    private static void AssertClose(Tensor expected, Tensor actual, string what, double tolerance = 1e-4)
    {
        Assert.Equal(expected.shape, actual.shape);
        double range = Math.Max(expected.abs().max().item<float>(), 1e-6);
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= tolerance * range, $"{what}: largest difference {error:G3} exceeds {tolerance} of the range {range:G3}.");
    }

    // Every weight of the UNet and text encoder, copied.
    private static Dictionary<string, Tensor> Snapshot(DiffusionModel model)
    {
        var all = new Dictionary<string, Tensor>();
        foreach (var (name, p) in UNet(model).named_parameters()) all["unet." + name] = p.detach().clone();
        foreach (var (name, p) in model.Prompts!.TextModel.named_parameters()) all["text_encoder." + name] = p.detach().clone();
        return all;
    }

    private static void AssertIdentical(Dictionary<string, Tensor> before, Dictionary<string, Tensor> after)
    {
        foreach (var (name, t) in before)
            Assert.True(Bits(t, after[name]), $"'{name}' is not bit-identical to the loaded weight.");
    }

    // Whether two float32 tensors hold the same bytes (not just equal values: -0 and 0 differ).
    private static bool Bits(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.contiguous().data<float>().ToArray().Select(BitConverter.SingleToInt32Bits)
            .SequenceEqual(b.contiguous().data<float>().ToArray().Select(BitConverter.SingleToInt32Bits));

    [Theory]
    [InlineData("attn_procs", "diffusers", 48, 0)]
    [InlineData("diffusers", "diffusers", 48, 12)]
    [InlineData("peft", "peft", 48, 0)]
    [InlineData("kohya", "kohya", 77, 12)]
    public void EachLayoutGivesDiffusersOutput(string file, string layout, int unetLayers, int textLayers)
    {
        var expected = Expected();
        using var model = LoadModel();
        using (var plain = Run(model, expected)) AssertClose(expected["base"], plain, "without LoRA");

        using var lora = model.LoadLora(Lora(file), Scale);
        Assert.Equal(layout, lora.Layout);
        Assert.Equal(unetLayers, lora.UNetLayers);
        Assert.Equal(textLayers, lora.TextEncoderLayers);
        Assert.True(lora.IsFused);
        using var output = Run(model, expected);
        AssertClose(expected[file == "kohya" ? "kohya" : "attn"], output, $"{file} at scale {Scale}");

        if (textLayers > 0)
        {
            var text = model.Prompts!.TextModel.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (key, want) in expected.Where(kv => kv.Key.StartsWith("te.", StringComparison.Ordinal)))
                AssertClose(want, text[key[3..]], $"{file}: text encoder {key[3..]}", 1e-6);
        }
    }

    [Fact]
    public void UnfusingRestoresTheLoadedWeightsBitForBit()
    {
        using var model = LoadModel();
        var before = Snapshot(model);
        var kohya = model.LoadLora(Lora("kohya"), Scale);
        var diffusers = model.LoadLora(Lora("diffusers"), -1.3);
        var peft = model.LoadLora(Lora("peft"), 0.25);
        Assert.False(Bits(before["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"], Snapshot(model)["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"]));
        Assert.True(LoraFusion.Of(model).OriginalBytes > 0);

        diffusers.Unfuse();
        Assert.False(diffusers.IsFused);
        diffusers.Unfuse();   // twice is nothing
        kohya.Dispose();
        peft.Dispose();
        AssertIdentical(before, Snapshot(model));
        Assert.Equal(0, LoraFusion.Of(model).OriginalBytes);   // no copies kept once nothing is fused
        var expected = Expected();
        using var output = Run(model, expected);
        AssertClose(expected["base"], output, "after unfusing");
        diffusers.Dispose();
    }

    [Fact]
    public void SeveralAdaptersAddTheirDeltas()
    {
        using var model = LoadModel();
        var before = Snapshot(model);
        var attn = SafeTensors.Read(File.ReadAllBytes(Lora("attn_procs")), "attn_procs");
        var kohya = SafeTensors.Read(File.ReadAllBytes(Lora("kohya")), "kohya");
        const string Q = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
        const string ProjIn = "up_blocks.0.attentions.2.proj_in";
        const string Conv = "down_blocks.1.resnets.0.conv1";

        // diffusers' processors at 0.7, the same weights as PEFT at -0.3, Kohya at 0.5.
        using var a = model.LoadLora(Lora("attn_procs"), Scale);
        using var b = model.LoadLora(Lora("peft"), -0.3);
        using var c = model.LoadLora(Lora("kohya"), 0.5);
        var after = Snapshot(model);

        Tensor AttnDelta(string proc, string lora) =>
            attn[$"{proc}.processor.{lora}.up.weight"].mm(attn[$"{proc}.processor.{lora}.down.weight"]);
        Tensor KohyaDelta(string module, long[] shape)
        {
            string k = "lora_unet_" + module.Replace('.', '_');
            double alpha = kohya[k + ".alpha"].item<float>();
            return (kohya[k + ".lora_up.weight"].flatten(1) * (alpha / 4)).mm(kohya[k + ".lora_down.weight"].flatten(1)).reshape(shape);
        }
        string qProc = Q[..^".to_q".Length];
        var q = before[$"unet.{Q}.weight"];
        using var qWant = q + (Scale - 0.3) * AttnDelta(qProc, "to_q_lora") + 0.5 * KohyaDelta(Q, q.shape);
        AssertClose(qWant, after[$"unet.{Q}.weight"], "to_q with three LoRAs", 1e-6);
        var projIn = before[$"unet.{ProjIn}.weight"];
        AssertClose(projIn + 0.5 * KohyaDelta(ProjIn, projIn.shape), after[$"unet.{ProjIn}.weight"], "proj_in (1x1 convolution)", 1e-6);
        var conv = before[$"unet.{Conv}.weight"];
        AssertClose(conv + 0.5 * KohyaDelta(Conv, conv.shape), after[$"unet.{Conv}.weight"], "resnet conv1 (3x3)", 1e-6);

        // Taking the middle one out leaves the other two.
        b.Unfuse();
        var left = Snapshot(model);
        using var qLeft = q + Scale * AttnDelta(qProc, "to_q_lora") + 0.5 * KohyaDelta(Q, q.shape);
        AssertClose(qLeft, left[$"unet.{Q}.weight"], "to_q after unfusing one of three", 1e-6);
        Assert.True(Bits(after[$"unet.{ProjIn}.weight"], left[$"unet.{ProjIn}.weight"]));
    }

    [Fact]
    public void APeftConfigBesideTheFileGivesTheAlpha()
    {
        string folder = Path.Combine(_folder, "peft");
        Directory.CreateDirectory(folder);
        string file = Path.Combine(folder, "adapter_model.safetensors");
        File.Copy(Lora("peft"), file);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), """{ "peft_type": "LORA", "r": 4, "lora_alpha": 2, "rank_pattern": {}, "alpha_pattern": {} }""");
        using var model = LoadModel();
        var before = Snapshot(model);
        Dictionary<string, Tensor> halved, withConfig;
        using (model.LoadLora(Lora("peft"), Scale / 2)) halved = Snapshot(model);
        using (model.LoadLora(file, Scale)) withConfig = Snapshot(model);
        foreach (var (name, t) in halved) AssertClose(t, withConfig[name], name, 1e-6);
        AssertIdentical(before, Snapshot(model));

        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), """{ "r": 4, "lora_alpha": 2, "rank_pattern": { "to_q": 8 } }""");
        var e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(file));
        Assert.Contains("rank_pattern", e.Message);
    }

    private string Write(string name, params (string Name, Tensor Tensor)[] tensors)
    {
        string path = Path.Combine(_folder, name + ".safetensors");
        File.WriteAllBytes(path, SafeTensors.Write(tensors));
        return path;
    }

    [Fact]
    public void BadFilesAndScalesAreExplained()
    {
        using var model = LoadModel();
        var before = Snapshot(model);
        const string P = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora";

        string nowhere = Write("nowhere",
            ("lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", randn(4, 64)),
            ("lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", randn(64, 4)),
            ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", randn(4, 64)),
            ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", randn(64, 4)));
        var e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(nowhere));
        Assert.Contains("1 of its 2 LoRA layers match no layer", e.Message);
        Assert.Contains("lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", e.Message);

        string checkpoint = Write("checkpoint", ("model.diffusion_model.input_blocks.0.0.weight", randn(8, 4, 3, 3)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(checkpoint));
        Assert.Contains("is not a LoRA file of a layout this library reads", e.Message);
        Assert.Contains("model.diffusion_model.input_blocks.0.0.weight", e.Message);

        string loha = Write("loha", ("lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_a", randn(64, 4)),
            ("lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight", randn(4, 64)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(loha));
        Assert.Contains("none of the LoRA layouts", e.Message);
        Assert.Contains("hada_w1_a", e.Message);

        string mixed = Write("mixed", ($"{P}.down.weight", randn(4, 64)), ($"{P}.up.weight", randn(64, 4)),
            ("base_model.model.down_blocks.1.attentions.0.proj_in.lora_A.weight", randn(4, 64)),
            ("base_model.model.down_blocks.1.attentions.0.proj_in.lora_B.weight", randn(64, 4)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(mixed));
        Assert.Contains("mixes LoRA layouts", e.Message);

        string ranks = Write("ranks", ($"{P}.down.weight", randn(4, 64)), ($"{P}.up.weight", randn(64, 3)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(ranks));
        Assert.Contains("ranks disagree", e.Message);
        Assert.Contains("rank 4", e.Message);

        string half = Write("half", ($"{P}.down.weight", randn(4, 64)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(half));
        Assert.Contains("has no up weight", e.Message);

        string wide = Write("wide", ($"{P}.down.weight", randn(4, 32)), ($"{P}.up.weight", randn(64, 4)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(wide));
        Assert.Contains("cannot update 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight'", e.Message);

        var nan = randn(64, 4);
        nan[3, 1] = tensor(float.NaN);
        string broken = Write("nan", ($"{P}.down.weight", randn(4, 64)), ($"{P}.up.weight", nan));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(broken));
        Assert.Contains("NaN", e.Message);
        Assert.Contains($"{P}.up.weight", e.Message);

        string infiniteAlpha = Write("alpha",
            ("lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight", randn(4, 64, 1, 1)),
            ("lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight", randn(64, 4, 1, 1)),
            ("lora_unet_down_blocks_1_attentions_0_proj_in.alpha", tensor(float.PositiveInfinity)));
        e = Assert.Throws<CheckpointFormatException>(() => model.LoadLora(infiniteAlpha));
        Assert.Contains("alpha", e.Message);

        foreach (double scale in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity })
        {
            var s = Assert.Throws<ArgumentOutOfRangeException>(() => model.LoadLora(Lora("peft"), scale));
            Assert.Contains("finite", s.Message);
        }

        // A failed load leaves the model as it was.
        AssertIdentical(before, Snapshot(model));
        Assert.Empty(LoraFusion.Of(model).Fused);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
