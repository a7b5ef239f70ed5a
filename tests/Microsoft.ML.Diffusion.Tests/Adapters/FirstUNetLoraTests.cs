using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Adapters;

/// <summary>
/// LoRA adapters trained on the library's first UNet still fuse into a model of it after its file loads as diffusers'
/// UNet2DModel: their layers are renamed as the weights were (the fused qkv's split into to_q, to_k, to_v), so the model
/// computes what the first UNet with the adapter fused computed, for labels and the null class; unfusing gives back the
/// loaded weights exactly, and model zips holding such adapters load too.
/// </summary>
public sealed class FirstUNetLoraTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-first-unet-lora-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    // Class-conditional, two levels of two residual blocks (so block indices are renumbered), attention at both levels
    // with one head (so it converts), a skip convolution where the width changes.
    private static readonly UNetOptions Network = new()
    {
        ImageChannels = 1, ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1, 2], AttentionResolutions = [8, 4],
        NormGroups = 4, AttentionHeads = 1, ResidualBlocksPerLevel = 2,
        Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = 3 },
    };

    // The self-attention's fused qkv and output projection, the residual blocks' first convolution and time projection
    // (a linear layer) and the skip convolution.
    private static readonly string[] Targets = ["qkv", "projection", "conv1", "time_projection", "skip"];

    // A first-UNet model whose every weight is random (as one trained before), saved as the library wrote them (kind
    // "unet"), and a LoRA trained on it in place: its file (diffusers' layout, as SaveLora writes it) and the adapter in
    // memory (with its alpha).
    private (DiffusionModel Legacy, string ModelFile, string LoraFile, LoraAdapter Adapter) FirstUNetWithLora()
    {
        manual_seed(3);
        var network = new UNetNoisePredictor(Network);
        var generator = new Generator(11);
        using (no_grad())
            foreach (var p in network.parameters())
                using (var values = randn(p.shape, generator: generator) * 0.2) p.copy_(values);
        var legacy = new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
        string modelFile = Path.Combine(_folder, "first.mldiff");
        legacy.Save(modelFile);

        string loraFile = Path.Combine(_folder, "first-lora.safetensors");
        using var trainer = new DiffusionTrainer(legacy, new LoraTrainingOptions { Rank = 2, Alpha = 3, TargetModules = Targets },
            new DiffusionTrainerOptions { BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 0, EmaDecay = 0, Seed = 1 });
        using (var images = rand(4, 1, 8, 8, generator: new Generator(1)) * 2 - 1)
        using (var labels = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 1 })))
            trainer.Train(images, 2, conditions: labels);
        // Two steps move up only a little from zero: a larger update shows a wrong rename clearly.
        using (no_grad())
            foreach (var layer in ((LoraNetwork)trainer.TrainedModule).Layers)
                using (var noise = randn(layer.Up.shape, generator: generator) * 0.3) layer.Up.add_(noise);
        trainer.SaveLora(loraFile);
        return (legacy, modelFile, loraFile, trainer.TrainedAdapter());
    }

    // The network's outputs for labels (one of them dropped to the null class) and for the null condition.
    private static Tensor[] Outputs(DiffusionModel model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = randn(4, 1, 8, 8, generator: new Generator(5));
        var t = tensor(new long[] { 5, 250, 600, 990 });
        using var labels = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 1 }));
        using var dropped = labels.WithNull(tensor(new[] { false, true, false, false }));
        Tensor[] outputs = [model.Network.Forward(x, t, dropped), model.Network.Forward(x, t, null)];
        foreach (var output in outputs) output.MoveToOuterDisposeScope();
        return outputs;
    }

    private static void AssertClose(Tensor[] expected, Tensor[] actual)
    {
        foreach (var (e, a) in expected.Zip(actual))
        {
            double range = e.abs().max().item<float>();
            double error = (e - a).abs().max().item<float>();
            Assert.True(error <= 1e-5 * Math.Max(1, range), $"largest difference {error:E2} on outputs up to {range:F3}");
        }
    }

    private static void AssertSame(Tensor[] expected, Tensor[] actual) =>
        Assert.All(expected.Zip(actual), p => Assert.True(p.First.equal(p.Second).all().item<bool>(), "the outputs differ"));

    [Fact]
    public void AFirstUNetsLoraFusesIntoItsUNet2DModelAsIntoTheFirstUNetAndUnfusesExactly()
    {
        var made = FirstUNetWithLora();
        using var legacy = made.Legacy;
        using var adapter = made.Adapter;
        var (modelFile, loraFile) = (made.ModelFile, made.LoraFile);
        var legacyPlain = Outputs(legacy);

        // Expected: the first UNet itself with the file fused, and the in-memory adapter (alpha 3, rank 2) on top.
        Tensor[] expected;
        int legacyLayers, qkvLayers;
        using (var file = legacy.LoadLora(loraFile))
        using (var memory = LoraExtensions.Fuse(legacy, adapter.Clone(), 0.6, ""))
        {
            legacyLayers = file.UNetLayers;
            qkvLayers = file.Targets.Count(t => t.Key.EndsWith(".attention.qkv.weight", StringComparison.Ordinal));
            Assert.Equal(4 + 1 + 6, qkvLayers);   // attention in every block: 2 × 2 down, the middle's, 2 × 3 up
            Assert.Equal(legacyLayers, memory.UNetLayers);
            expected = Outputs(legacy);
        }
        Assert.False(expected[0].equal(legacyPlain[0]).all().item<bool>());
        Assert.False(expected[0].equal(expected[1]).all().item<bool>());   // the labels count
        AssertSame(legacyPlain, Outputs(legacy));

        using var converted = DiffusionModel.Load(modelFile, CPU);
        Assert.IsType<UNet2DModelNoisePredictor>(converted.Network);
        var plain = Outputs(converted);
        AssertClose(legacyPlain, plain);
        string savedLora = Path.Combine(_folder, "renamed-lora.safetensors");
        using (var file = converted.LoadLora(loraFile))
        using (var memory = LoraExtensions.Fuse(converted, adapter.Clone(), 0.6, ""))
        {
            // Each qkv layer becomes three; the first UNet's fourth down block is the second level's second resnet.
            Assert.Equal(legacyLayers + 2 * qkvLayers, file.UNetLayers);
            Assert.Contains(file.Targets, t => t.Key == "unet.mid_block.attentions.0.to_v.weight");
            Assert.Contains(file.Targets, t => t.Key == "unet.down_blocks.1.resnets.1.conv1.weight");
            AssertClose(expected, Outputs(converted));
            file.Save(savedLora);   // now under UNet2DModel's names
        }
        AssertSame(plain, Outputs(converted));

        // A LoRA that already names UNet2DModel's modules fuses as it is; so does the original into a copy of the model.
        using (var file = converted.LoadLora(savedLora))
        using (var memory = LoraExtensions.Fuse(converted, adapter.Clone(), 0.6, ""))
            AssertClose(expected, Outputs(converted));
        AssertSame(plain, Outputs(converted));
        using var copy = converted.CopyTo(CPU);
        using (var file = copy.LoadLora(loraFile))
        using (var memory = LoraExtensions.Fuse(copy, adapter.Clone(), 0.6, ""))
            AssertClose(expected, Outputs(copy));
    }

    private sealed class ClassRow
    {
        public int Seed { get; set; }

        public int Label { get; set; }
    }

    [Fact]
    public void AModelZipOfTheFirstUNetWithItsLoraLoadsOntoTheConvertedBase()
    {
        var made = FirstUNetWithLora();
        using var legacy = made.Legacy;
        made.Adapter.Dispose();
        using var fused = legacy.LoadLora(made.LoraFile);
        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(new[] { new ClassRow { Seed = 5, Label = 2 }, new ClassRow { Seed = 6, Label = 0 } });
        var options = new DiffusionGenerationOptions
        {
            SeedColumnName = "Seed", ConditionColumnName = "Label", OutputKind = GeneratedOutputKind.Pixels,
            Generation = { Sampler = "ddim", Steps = 3, GuidanceScale = 2 },
        };
        var stage = ml.Transforms.DiffusionGenerate(legacy, options).Fit(rows);
        float[][] Generated(ITransformer t) => [.. t.Transform(rows).GetColumn<VBuffer<float>>("GeneratedImage").Select(v => v.DenseValues().ToArray())];
        var before = Generated(stage);

        // The zip refers to the first UNet's file and holds the adapter under the first UNet's names, as zips saved
        // before the first UNet's files converted do.
        string zip = Path.Combine(_folder, "first-lora.zip");
        ml.Model.SaveAtomically(stage, rows.Schema, zip);
        var loaded = new MLContext().Model.Load(zip, out _);
        try
        {
            var after = Generated(loaded);
            foreach (var (e, a) in before.Zip(after))
            {
                double range = e.Max(v => Math.Abs(v)), error = e.Zip(a, (x, y) => Math.Abs(x - y)).Max();
                Assert.True(error <= 1e-5 * Math.Max(1, range), $"largest difference {error:E2} on images up to {range:F3}");
            }
        }
        finally
        {
            ((IDisposable)loaded).Dispose();
        }
    }
}
