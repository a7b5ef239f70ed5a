using System.Diagnostics;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Interchange;

/// <summary>
/// Models of the library's own UNet, unconditional and class-conditional, are written as diffusers' UNet2DModel:
/// the folder reads back as a UNet2DModel that computes what the own UNet did.
/// </summary>
public sealed class OwnUNetExportTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-own-unet-").FullName;

    // Two levels, attention at the second, a residual block and a skip convolution per level change of width.
    private static UNetOptions Network(ConditioningOptions? condition = null, int heads = 2, int[]? attention = null) => new()
    {
        ImageChannels = 1, ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1, 2], AttentionResolutions = attention ?? [4],
        NormGroups = 4, AttentionHeads = heads, ResidualBlocksPerLevel = 2, Condition = condition ?? new ConditioningOptions(),
    };

    private static readonly ConditioningOptions ThreeClasses = new() { Kind = ConditionKind.Class, ClassCount = 3 };

    // A model of the network whose every weight is random (the output layer starts at zero otherwise).
    private static DiffusionModel RandomModel(UNetOptions network)
    {
        using var trainer = new DiffusionTrainer(network, new NoiseScheduleOptions(), new DiffusionTrainerOptions { Seed = 3, EmaDecay = 0 }, CPU);
        var model = trainer.ToModel();
        var generator = new Generator(11);
        using var noGrad = no_grad();
        foreach (var p in model.Network.parameters())
            using (var values = randn(p.shape, generator: generator) * 0.2) p.copy_(values);
        return model;
    }

    private static void AssertClose(Tensor expected, Tensor actual)
    {
        double range = expected.abs().max().item<float>();
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= 1e-5 * Math.Max(1, range), $"largest difference {error:E2} on outputs up to {range:F3}");
    }

    [Fact]
    public void AnUnconditionalOwnUNetIsWrittenAsAUNet2DModelThatComputesTheSame()
    {
        using var model = RandomModel(Network());
        string folder = Path.Combine(_folder, "unconditional");
        model.SaveDiffusers(folder);
        Assert.True(File.Exists(Path.Combine(folder, "model_index.json")));
        using var exported = DiffusersFormat.Load(folder, CPU);
        Assert.IsType<UNet2DModelOptions>(exported.NetworkOptions);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(5);
        var x = randn(3, 1, 8, 8, generator: generator);
        var t = tensor(new long[] { 0, 411, 999 });
        var expected = model.Network.Forward(x, t, null);
        Assert.True(expected.abs().max().item<float>() > 0.1f);
        AssertClose(expected, exported.Network.Forward(x, t, null));
    }

    [Fact]
    public void AClassConditionalOwnUNetKeepsItsClassesAndItsNullClass()
    {
        using var model = RandomModel(Network(ThreeClasses, heads: 1, attention: [8, 4]));
        string folder = Path.Combine(_folder, "class");
        model.SaveDiffusers(folder);
        using var exported = DiffusersFormat.Load(folder, CPU);
        var options = Assert.IsType<UNet2DModelOptions>(exported.NetworkOptions);
        Assert.True(options.LearnedNullClass);
        Assert.Equal(["AttnDownBlock2D", "AttnDownBlock2D"], options.DownBlockTypes);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(6);
        var x = randn(4, 1, 8, 8, generator: generator);
        var t = tensor(new long[] { 5, 250, 600, 990 });
        using var labels = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 1 }));
        using var dropped = labels.WithNull(tensor(new[] { false, true, false, true }));
        AssertClose(model.Network.Forward(x, t, labels), exported.Network.Forward(x, t, labels));
        AssertClose(model.Network.Forward(x, t, dropped), exported.Network.Forward(x, t, dropped));
        AssertClose(model.Network.Forward(x, t, null), exported.Network.Forward(x, t, null));
    }

    [Fact]
    public void AnOwnUNetWithoutAUNet2DModelEquivalentIsRefusedSayingWhy()
    {
        var text = new ConditioningOptions { Kind = ConditionKind.Text, VocabularySize = 20, MaxTokens = 4, TextWidth = 16, TextLayers = 1, TextHeads = 2 };
        using (var model = RandomModel(Network(text)))
        {
            var error = Assert.Throws<NotSupportedException>(() => model.SaveDiffusers(Path.Combine(_folder, "text")));
            Assert.Contains("text-conditional own UNet", error.Message);
        }
        // Two heads at 8 and at 16 channels: UNet2DModel has one channels-per-head for every level.
        using (var model = RandomModel(Network(heads: 2, attention: [8, 4])))
        {
            var error = Assert.Throws<NotSupportedException>(() => model.SaveDiffusers(Path.Combine(_folder, "heads")));
            Assert.Contains("attention_head_dim", error.Message);
        }
        Assert.False(Directory.Exists(Path.Combine(_folder, "text")));
        Assert.False(Directory.Exists(Path.Combine(_folder, "heads")));
    }

    // Needs Debian's python3-torch and a diffusers v0.21.x checkout (MLDIFFUSION_DIFFUSERS_SRC = its src folder), as
    // DiffusersExportTests' diffusers test does.
    [SkippableFact]
    public void DiffusersItselfGivesTheOwnUNetsOutputs()
    {
        string? source = Environment.GetEnvironmentVariable("MLDIFFUSION_DIFFUSERS_SRC");
        Skip.If(string.IsNullOrEmpty(source) || !Directory.Exists(Path.Combine(source, "diffusers")),
            "Set MLDIFFUSION_DIFFUSERS_SRC to the src folder of a diffusers v0.21.x checkout (and install python3-torch) to run this test.");
        using var model = RandomModel(Network(ThreeClasses, heads: 1, attention: [8, 4]));
        string folder = Path.Combine(_folder, "for-diffusers");
        model.SaveDiffusers(folder);
        using (var scope = NewDisposeScope())
        using (var noGrad = no_grad())
        {
            var generator = new Generator(8);
            var sample = randn(2, 1, 8, 8, generator: generator);
            var timestep = tensor(new long[] { 7, 700 });
            var labels = tensor(new long[] { 2, 3 });   // 3: the null class
            using var condition = ConditionBatch.Classes(tensor(new long[] { 2, 0 })).WithNull(tensor(new[] { false, true }));
            var expected = model.Network.Forward(sample, timestep, condition);
            File.WriteAllBytes(Path.Combine(folder, "check.safetensors"), SafeTensors.Write(
                [("sample", sample), ("timestep", timestep), ("class_labels", labels), ("output", expected)]));
        }
        string script = Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", "check_unet_output.py");
        var start = new ProcessStartInfo("/usr/bin/python3", ["-W", "ignore", script, "--diffusers", source!, "--folder", folder])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["OPENBLAS_NUM_THREADS"] = "1";
        using var python = System.Diagnostics.Process.Start(start)!;
        string output = python.StandardOutput.ReadToEnd(), errors = python.StandardError.ReadToEnd();
        python.WaitForExit();
        Assert.True(python.ExitCode == 0, $"diffusers disagrees: {output}\n{errors}");
        Assert.Contains("match", output);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
