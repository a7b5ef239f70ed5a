using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Adapters;

/// <summary>
/// LoRA adapters the trainer attaches compute what diffusers v0.21.4 computes with the same LoRA, and the file the
/// trainer writes is the one diffusers read (TestData/StableDiffusion/lora/make_trained_lora_fixtures.py): the adapters
/// get the script's formula weights, <see cref="DiffusionTrainer.SaveLora"/> must write exactly the tensors of
/// trained-sd.safetensors / trained-unet2d.safetensors, which diffusers' load_attn_procs loaded to compute sd.lora /
/// unet2d.lora; the attached adapters, and the written file fused by LoadLora, give those outputs within 1e-4 of their range.
/// </summary>
public sealed class TrainedLoraFileTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string[] SdTargets = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1"];
    private static readonly string[] UNet2DTargets = ["to_q", "to_k", "to_v", "to_out.0", "conv1"];

    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-trained-lora-").FullName;

    internal static string Lora(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "lora", name + ".safetensors");

    internal static DiffusionModel StableDiffusion() =>
        StableDiffusionFormat.Load(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd1-tiny"), CPU);

    internal static DiffusionModel UNet2D() =>
        new(DiffusersUNetFolder.Load(Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", "unet-attn")), new NoiseScheduleOptions(), PredictionType.Epsilon);

    private static Dictionary<string, Tensor> Expected() => SafeTensors.Read(File.ReadAllBytes(Lora("trained-expected")), "trained-expected");

    // The fixture script's weights: layer k (ordinal order of names), role 0 down / 1 up, element j → ((37j + 101k + 53 role) mod 41 − 20) / 256.
    internal static Tensor Formula(long[] shape, int k, int role)
    {
        using var scope = NewDisposeScope();
        var j = arange(shape.Aggregate(1L, (a, b) => a * b), dtype: ScalarType.Int64);
        return ((j * 37 + (101 * k + 53 * role)).remainder(41) - 20).to(ScalarType.Float32).div(256).reshape(shape).MoveToOuterDisposeScope();
    }

    private static void SetFormulaWeights(DiffusionTrainer trainer)
    {
        var lora = (LoraNetwork)trainer.TrainedModule;
        var order = lora.Names.Select((name, i) => (name, i)).OrderBy(p => p.name, StringComparer.Ordinal).ToList();
        using var noGrad = no_grad();
        for (int k = 0; k < order.Count; k++)
        {
            var layer = lora.Layers[order[k].i];
            layer.Down.copy_(Formula(layer.Down.shape, k, 0));
            layer.Up.copy_(Formula(layer.Up.shape, k, 1));
        }
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what, ITestOutputHelper output)
    {
        Assert.Equal(expected.shape, actual.shape);
        double range = expected.abs().max().item<float>();
        double error = (expected - actual).abs().max().item<float>();
        output.WriteLine($"{what}: largest difference {error:E2} (range {range:F3})");
        Assert.True(error <= 1e-4 * range, $"{what}: largest difference {error:G3} exceeds 1e-4 of the range {range:G3}.");
    }

    private static void AssertSameTensors(string expectedFile, string actualFile)
    {
        var expected = SafeTensors.Read(File.ReadAllBytes(expectedFile), expectedFile);
        var actual = SafeTensors.Read(File.ReadAllBytes(actualFile), actualFile);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in expected)
        {
            Assert.Equal(t.dtype, actual[name].dtype);
            Assert.True(Same(t, actual[name]), $"'{name}' differs from the tensor diffusers loaded.");
        }
    }

    // Equal shapes and values, element for element.
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static Dictionary<string, Tensor> Weights(nn.Module module) => module.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    private static void AssertIdentical(Dictionary<string, Tensor> before, nn.Module module)
    {
        foreach (var (name, p) in module.named_parameters())
            Assert.True(Same(before[name], p), $"'{name}' is not the weight loaded.");
    }

    [Fact]
    public void StableDiffusionLoraIsWrittenAsDiffusersReadsItAndComputesItsOutput()
    {
        var io = Expected();
        using var model = StableDiffusion();
        var unet = ((UNet2DConditionNoisePredictor)model.Network).UNet;
        var before = Weights(unet);
        Tensor Run()
        {
            using var noGrad = no_grad();
            return unet.forward(io["sd.sample"], io["sd.timestep"], io["sd.encoder_hidden_states"]);
        }
        using (var plain = Run()) AssertClose(io["sd.base"], plain, "SD UNet without LoRA", output);

        string file = Path.Combine(_folder, "sd.safetensors");
        var options = new DiffusionTrainerOptions { EmaDecay = 0, Seed = 1 };
        using (var trainer = new DiffusionTrainer(model, new LoraTrainingOptions { Rank = 4, Alpha = 2, TargetModules = SdTargets }, options))
        {
            Assert.Same(model.Network, trainer.Network);   // adapted in place, not copied
            Assert.Equal(84, ((LoraNetwork)trainer.TrainedModule).Names.Count);
            SetFormulaWeights(trainer);
            using (var adapted = Run()) AssertClose(io["sd.lora"], adapted, "SD UNet with the attached adapters", output);
            Assert.Equal(file, trainer.SaveLora(file));
        }
        AssertSameTensors(Lora("trained-sd"), file);
        using (var plain = Run()) AssertClose(io["sd.base"], plain, "SD UNet after the trainer is disposed", output);
        AssertIdentical(before, unet);
        Assert.All(unet.parameters(), p => Assert.True(p.requires_grad));   // unfrozen again

        // The file written, read back and fused.
        using (var fused = model.LoadLora(file))
        {
            Assert.Equal("diffusers", fused.Layout);
            Assert.Equal(84, fused.UNetLayers);
            using var adapted = Run();
            AssertClose(io["sd.lora"], adapted, "SD UNet with the written file fused", output);

            // Saved again from the fused handle: the same tensors (the reader and the writer round-trip).
            string again = fused.Save(_folder);
            Assert.Equal(Path.Combine(_folder, DiffusersLoraFile.FileName), again);
            AssertSameTensors(Lora("trained-sd"), again);
        }
        AssertIdentical(before, unet);
    }

    [Fact]
    public void UNet2DModelLoraIsWrittenAsDiffusersReadsItAndComputesItsOutput()
    {
        var io = Expected();
        using var model = UNet2D();
        var before = Weights(model.Network);
        Tensor Run()
        {
            using var noGrad = no_grad();
            return model.Network.Forward(io["unet2d.sample"], io["unet2d.timestep"], null);
        }
        using (var plain = Run()) AssertClose(io["unet2d.base"], plain, "UNet2DModel without LoRA", output);

        string file = Path.Combine(_folder, "unet2d.safetensors");
        using (var trainer = new DiffusionTrainer(model, new LoraTrainingOptions { Rank = 4, Alpha = 2, TargetModules = UNet2DTargets }, new DiffusionTrainerOptions { EmaDecay = 0 }))
        {
            SetFormulaWeights(trainer);
            using (var adapted = Run()) AssertClose(io["unet2d.lora"], adapted, "UNet2DModel with the attached adapters", output);
            trainer.SaveLora(file);
        }
        AssertSameTensors(Lora("trained-unet2d"), file);
        AssertIdentical(before, model.Network);
        using (var fused = model.LoadLora(file))
        {
            Assert.Equal(24, fused.UNetLayers);
            using var adapted = Run();
            AssertClose(io["unet2d.lora"], adapted, "UNet2DModel with the written file fused", output);
        }
        AssertIdentical(before, model.Network);
    }

    [Fact]
    public void AdaptersAttachToTheClipTextEncoderAsFusingComputes()
    {
        // The text-encoder layers of diffusers.safetensors (q/k/v/out_proj, fc1, fc2 of layers 0 and 3), once attached as
        // adapters and once fused by LoadLora: the same hidden states.
        using var model = StableDiffusion();
        var text = model.Prompts!.TextModel;
        var file = SafeTensors.Read(File.ReadAllBytes(Lora("diffusers")), "diffusers");
        const string Prefix = "text_encoder.", Down = ".lora_linear_layer.down.weight";
        var modules = file.Keys.Where(k => k.StartsWith(Prefix, StringComparison.Ordinal) && k.EndsWith(Down, StringComparison.Ordinal))
            .Select(k => k[Prefix.Length..^Down.Length]).ToArray();
        Assert.Equal(12, modules.Length);
        using var ids = tensor(new long[,] { { 998, 320, 125, 539, 999, 999 }, { 998, 268, 999, 999, 999, 999 } });
        Tensor Run()
        {
            using var noGrad = no_grad();
            return text.forward(ids);
        }
        using var plain = Run();
        Tensor attached;
        using (var adapters = LoraNetwork.Attach(text, new LoraTrainingOptions { Rank = 4, TargetModules = modules }))
        {
            Assert.Equal(modules.Order(StringComparer.Ordinal), adapters.Names.Order(StringComparer.Ordinal));
            using (no_grad())
                foreach (var (name, layer) in adapters.Names.Zip(adapters.Layers))
                {
                    layer.Down.copy_(file[$"{Prefix}{name}{Down}"]);
                    layer.Up.copy_(file[$"{Prefix}{name}.lora_linear_layer.up.weight"]);
                }
            attached = Run();
        }
        using (var again = Run()) Assert.True(Same(plain, again), "detached adapters must leave the encoder as it was");
        Assert.False(Same(plain, attached));
        using (model.LoadLora(Lora("diffusers")))
        using (var fused = Run())
            AssertClose(fused, attached, "CLIP text encoder with attached adapters vs fused", output);
        attached.Dispose();
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
