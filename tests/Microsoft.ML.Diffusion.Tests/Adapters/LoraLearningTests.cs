using System.Diagnostics;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Adapters;

/// <summary>
/// A LoRA learns: a tiny unconditional model trained on two kinds of 8×8 images alike (white shapes on black, and the
/// same inverted: black shapes on white) draws both; a LoRA of its attention projections and residual convolutions,
/// trained on the inverted kind alone with the rest of the network frozen, makes the same seeds draw mostly that kind.
/// </summary>
public sealed class LoraLearningTests(ITestOutputHelper output) : IDisposable
{
    private const int Size = 8;

    // The tiny UNet (a UNet2DModel) at 8×8, with self-attention at 4×4 and in the middle.
    private static readonly UNetOptions Network = DiffusionTrainerTests.TinyNetwork with { ImageSize = Size, AttentionResolutions = [Size / 2] };

    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-lora-learns-").FullName;

    // 0 for an image mostly white (black shapes on white), 1 for one mostly black.
    private static int[] Kinds(Tensor images) => [.. images.mean([1, 2, 3]).data<float>().ToArray().Select(m => m > 0 ? 0 : 1)];

    [Fact]
    public void ALoraTrainedOnOneKindOfImageMakesTheModelDrawIt()
    {
        var clock = Stopwatch.StartNew();
        var cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
        using var shapes = SyntheticShapes.Generate(256, Size, seed: 1);
        using var sign = (arange(256) % 2 * -2 + 1).to(ScalarType.Float32).view(-1, 1, 1, 1);   // every other image inverted
        using var images = shapes * sign;
        using var baseTrainer = new DiffusionTrainer(Network, options: DiffusionTrainerTests.FastOptions(seed: 5), device: CPU);
        baseTrainer.Train(images, 200);
        using var model = baseTrainer.ToModel();
        double baseSeconds = clock.Elapsed.TotalSeconds;

        // Measure: the share of 48 samples (the same seeds each time) that are mostly white.
        var seeds = Enumerable.Range(0, 48).Select(i => (long)i).ToArray();
        double WhiteShare()
        {
            using var samples = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 20 }, seeds);
            return Kinds(samples).Count(c => c == 0) / 48.0;
        }
        double before = WhiteShare();

        var kinds = Kinds(images);
        using var white = images.index_select(0, tensor(kinds.Select((c, i) => (c, i)).Where(p => p.c == 0).Select(p => (long)p.i).ToArray()));
        string file = Path.Combine(_folder, "white.safetensors");
        var options = new DiffusionTrainerOptions { BatchSize = 32, LearningRate = 5e-3, WarmupSteps = 10, EmaDecay = 0, Seed = 7 };
        clock.Restart();
        var losses = new List<double>();
        using (var trainer = new DiffusionTrainer(model, new LoraTrainingOptions { Rank = 4, TargetModules = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"] }, options))
        {
            trainer.Train(white, 100, p => losses.Add(p.Loss), reportEvery: 25);
            trainer.SaveLora(file);
        }
        double loraSeconds = clock.Elapsed.TotalSeconds;
        double unchanged = WhiteShare();
        using var lora = model.LoadLora(file);
        double after = WhiteShare();
        output.WriteLine($"mostly-white share of 48 samples: base {before:P0}, after the trainer {unchanged:P0}, with the LoRA {after:P0} " +
            $"({white.shape[0]} training images; LoRA loss {string.Join(" → ", losses.Select(l => l.ToString("F4")))}; " +
            $"base {baseSeconds:F1} s, LoRA {loraSeconds:F1} s, {(System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds:F1} s of CPU in all)");

        Assert.Equal(before, unchanged);   // the trainer left the model as it was
        Assert.InRange(before, 0.2, 0.8);
        Assert.True(after >= 0.85 && after >= before + 0.25, $"the LoRA should make most samples mostly white: {before:P0} → {after:P0}");
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
