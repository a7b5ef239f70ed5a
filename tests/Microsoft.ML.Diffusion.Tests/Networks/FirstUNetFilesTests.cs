using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Networks;

/// <summary>
/// Files of the library's first UNet (checkpoints and training states of kind "unet") keep loading: unconditional and
/// class-conditional ones as diffusers' UNet2DModel computing what the first UNet did (so they export to diffusers and
/// train on), text-conditional ones and ones whose heads span levels of different widths into the first UNet itself.
/// </summary>
public sealed class FirstUNetFilesTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-first-unet-").FullName;

    // Two levels, attention at the second, a residual block and a skip convolution per level change of width.
    private static UNetOptions Network(ConditioningOptions? condition = null, int heads = 2, int[]? attention = null) => new()
    {
        ImageChannels = 1, ImageSize = 8, BaseChannels = 8, ChannelMultipliers = [1, 2], AttentionResolutions = attention ?? [4],
        NormGroups = 4, AttentionHeads = heads, ResidualBlocksPerLevel = 2, Condition = condition ?? new ConditioningOptions(),
    };

    private static readonly ConditioningOptions ThreeClasses = new() { Kind = ConditionKind.Class, ClassCount = 3 };

    private static readonly ConditioningOptions Text = new() { Kind = ConditionKind.Text, VocabularySize = 20, MaxTokens = 4, TextWidth = 16, TextLayers = 1, TextHeads = 2 };

    // A first-UNet network whose every weight is random (its output layer starts at zero otherwise), as one trained before.
    private static UNetNoisePredictor RandomFirstUNet(UNetOptions network)
    {
        manual_seed(3);
        var first = new UNetNoisePredictor(network);
        var generator = new Generator(11);
        using var noGrad = no_grad();
        foreach (var p in first.parameters())
            using (var values = randn(p.shape, generator: generator) * 0.2) p.copy_(values);
        return first;
    }

    // A first-UNet model saved as such (kind "unet", its own layer names), as the library wrote them.
    private string SavedFirstUNet(DiffusionModel model, string name)
    {
        string path = Path.Combine(_folder, name + ".mldiff");
        model.Save(path);
        using (var stream = File.OpenRead(path))
            Assert.IsType<UNetOptions>(DiffusionCheckpoint.Read(stream, path).Header.Network);
        return path;
    }

    private static void AssertClose(Tensor expected, Tensor actual)
    {
        double range = expected.abs().max().item<float>();
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= 1e-5 * Math.Max(1, range), $"largest difference {error:E2} on outputs up to {range:F3}");
    }

    [Fact]
    public void AnUnconditionalFirstUNetLoadsAsAUNet2DModelThatComputesTheSameAndExports()
    {
        using var model = new DiffusionModel(RandomFirstUNet(Network()), new NoiseScheduleOptions(), PredictionType.Epsilon, trainingSteps: 12);
        using var loaded = DiffusionModel.Load(SavedFirstUNet(model, "unconditional"), CPU);
        var options = Assert.IsType<UNet2DModelOptions>(loaded.NetworkOptions);
        Assert.False(options.FlipSinToCos);
        Assert.Equal(12, loaded.TrainingSteps);

        using (var scope = NewDisposeScope())
        using (var noGrad = no_grad())
        {
            var generator = new Generator(5);
            var x = randn(3, 1, 8, 8, generator: generator);
            var t = tensor(new long[] { 0, 411, 999 });
            var expected = model.Network.Forward(x, t, null);
            Assert.True(expected.abs().max().item<float>() > 0.1f);
            AssertClose(expected, loaded.Network.Forward(x, t, null));
        }

        // As a UNet2DModel it is written to diffusers and read back exactly.
        string folder = Path.Combine(_folder, "unconditional-diffusers");
        loaded.SaveDiffusers(folder);
        using var exported = DiffusersFormat.Load(folder, CPU);
        using var scope2 = NewDisposeScope();
        using var noGrad2 = no_grad();
        var x2 = randn(2, 1, 8, 8, generator: new Generator(9));
        var t2 = tensor(new long[] { 30, 800 });
        Assert.True(loaded.Network.Forward(x2, t2, null).equal(exported.Network.Forward(x2, t2, null)).all().item<bool>());
    }

    [Fact]
    public void AClassConditionalFirstUNetKeepsItsClassesAndItsNullClass()
    {
        using var model = new DiffusionModel(RandomFirstUNet(Network(ThreeClasses, heads: 1, attention: [8, 4])), new NoiseScheduleOptions(), PredictionType.VPrediction);
        using var loaded = DiffusionModel.Load(SavedFirstUNet(model, "class"), CPU);
        var options = Assert.IsType<UNet2DModelOptions>(loaded.NetworkOptions);
        Assert.True(options.LearnedNullClass);
        Assert.Equal(["AttnDownBlock2D", "AttnDownBlock2D"], options.DownBlockTypes);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(6);
        var x = randn(4, 1, 8, 8, generator: generator);
        var t = tensor(new long[] { 5, 250, 600, 990 });
        using var labels = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 1 }));
        using var dropped = labels.WithNull(tensor(new[] { false, true, false, true }));
        AssertClose(model.Network.Forward(x, t, labels), loaded.Network.Forward(x, t, labels));
        AssertClose(model.Network.Forward(x, t, dropped), loaded.Network.Forward(x, t, dropped));
        AssertClose(model.Network.Forward(x, t, null), loaded.Network.Forward(x, t, null));
    }

    // Same weights give the same outputs and the same gradients: from one starting point and one stream of batches the
    // converted network trains as the first UNet did, so only the initial draw tells a default-trained model from one.
    [Fact]
    public void TheConvertedNetworkHasTheFirstUNetsGradients()
    {
        var network = Network(ThreeClasses, heads: 1);
        using var first = RandomFirstUNet(network);
        using var converted = NoisePredictors.Create(FirstUNetFiles.Network(network));
        FirstUNetFiles.LoadRenamed(converted, network, first.state_dict(), "the first UNet");

        using var scope = NewDisposeScope();
        var generator = new Generator(8);
        var x = randn(4, 1, 8, 8, generator: generator);
        var upstream = randn(4, 1, 8, 8, generator: generator);
        var t = tensor(new long[] { 3, 300, 650, 999 });
        using var labels = ConditionBatch.Classes(tensor(new long[] { 2, 0, 1, 1 }));
        using var dropped = labels.WithNull(tensor(new[] { false, false, true, false }));
        (first.Forward(x, t, dropped) * upstream).sum().backward();
        (converted.Forward(x, t, dropped) * upstream).sum().backward();

        var expected = FirstUNetFiles.Rename(network, first.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!), "gradients");
        var actual = converted.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, gradient) in actual)
        {
            double range = expected[name].abs().max().item<float>();
            double error = (expected[name] - gradient).abs().max().item<float>();
            Assert.True(error <= 1e-5 * Math.Max(1, range), $"{name}: largest difference {error:E2} on gradients up to {range:F3}");
        }
    }

    [Fact]
    public void FirstUNetsNoDiffusersNetworkComputesLoadIntoTheFirstUNetAndAreNotExported()
    {
        foreach (var (name, network, why) in new[]
        {
            ("text", Network(Text), "text-conditional first UNet"),
            ("heads", Network(heads: 2, attention: [8, 4]), "attention_head_dim"),   // two heads at 8 and at 16 channels
        })
        {
            using var model = new DiffusionModel(RandomFirstUNet(network), new NoiseScheduleOptions(), PredictionType.Epsilon);
            using var loaded = DiffusionModel.Load(SavedFirstUNet(model, name), CPU);
            Assert.IsType<UNetNoisePredictor>(loaded.Network);
            using (var scope = NewDisposeScope())
            using (var noGrad = no_grad())
            {
                var x = randn(2, 1, 8, 8, generator: new Generator(4));
                var t = tensor(new long[] { 100, 900 });
                Assert.True(model.Network.Forward(x, t, null).equal(loaded.Network.Forward(x, t, null)).all().item<bool>());
            }
            var error = Assert.Throws<NotSupportedException>(() => loaded.SaveDiffusers(Path.Combine(_folder, name + "-diffusers")));
            Assert.Contains(why, error.Message);
            Assert.False(Directory.Exists(Path.Combine(_folder, name + "-diffusers")));
        }
    }

    [Fact]
    public void UNetOptionsBuildTheUNet2DModelAFirstUNetsTrainingStateResumesIn()
    {
        var network = Network(ThreeClasses, heads: 1);
        var hyper = new DiffusionTrainerOptions { Seed = 2, EmaDecay = 0, BatchSize = 4 };
        using var images = rand(8, 1, 8, 8, generator: new Generator(1)) * 2 - 1;
        using var labels = tensor(new long[] { 0, 1, 2, 0, 1, 2, 0, 1 });
        using var conditions = ConditionBatch.Classes(labels);
        string state = Path.Combine(_folder, "first.state");
        using var first = RandomFirstUNet(network);
        using (var old = new DiffusionTrainer(first, new NoiseScheduleOptions(), hyper, CPU))
        {
            old.Train(images, 2, conditions: conditions);
            old.SaveState(state);
        }

        using var resumed = new DiffusionTrainer(network, new NoiseScheduleOptions(), hyper, CPU);
        Assert.IsType<UNet2DModelNoisePredictor>(resumed.Network);
        resumed.LoadState(state);
        Assert.Equal(2, resumed.StepsDone);
        using (var scope = NewDisposeScope())
        using (var noGrad = no_grad())
        {
            var x = randn(2, 1, 8, 8, generator: new Generator(7));
            var t = tensor(new long[] { 10, 500 });
            using var c = ConditionBatch.Classes(tensor(new long[] { 2, 0 }));
            first.eval();
            resumed.Network.eval();
            AssertClose(first.Forward(x, t, c), resumed.Network.Forward(x, t, c));
        }
        resumed.Train(images, 1, conditions: conditions);
        Assert.Equal(3, resumed.StepsDone);

        // A text-conditional first UNet's state has no diffusers network to resume in: the error says so.
        var text = Network(Text);
        string textState = Path.Combine(_folder, "text.state");
        using (var textFirst = RandomFirstUNet(text))
        using (var old = new DiffusionTrainer(textFirst, new NoiseScheduleOptions(), hyper, CPU))
            old.SaveState(textState);
        using var textTrainer = new DiffusionTrainer(text, new NoiseScheduleOptions(), hyper, CPU);
        var error = Assert.Throws<CheckpointFormatException>(() => textTrainer.LoadState(textState));
        Assert.Contains("first UNet, which no longer trains", error.Message);
    }

    // Opt-in: needs a diffusers checkout (DiffusersCheckout).
    [SkippableFact]
    public void DiffusersItselfGivesTheFirstUNetsOutputs()
    {
        string source = DiffusersCheckout.SourceOrSkip();
        using var first = new DiffusionModel(RandomFirstUNet(Network(ThreeClasses, heads: 1, attention: [8, 4])), new NoiseScheduleOptions(), PredictionType.Epsilon);
        using var model = DiffusionModel.Load(SavedFirstUNet(first, "for-diffusers"), CPU);
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
        DiffusersCheckout.Check("check_unet_output.py", source, folder);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
