using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Training;

/// <summary>
/// A short version of the benchmark's memory soak (benchmarks: --soak): after a warm-up, hundreds of training
/// steps, models made and dropped, and dozens of sampling runs must leave no live tensor behind and keep resident memory flat.
/// </summary>
public sealed class MemorySoakTests(ITestOutputHelper output)
{
    [Fact]
    public void TrainingAndSamplingLeaveNoTensorsBehindAndKeepMemoryFlat()
    {
        var network = new UNetOptions { ImageChannels = 1, ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8] };
        using var images = (rand([64, 1, 16, 16], generator: new Generator(3)) * 2 - 1).DetachFromDisposeScope();
        using var trainer = new DiffusionTrainer(network, options: new DiffusionTrainerOptions { BatchSize = 8, Seed = 1 }, device: CPU);
        var generation = new GenerationOptions { Sampler = SamplerKind.Ddim, Steps = 5 };
        long[] seeds = [1, 2, 3, 4, 5, 6, 7, 8];
        void Sample(int runs)
        {
            using var model = trainer.ToModel();
            for (int i = 0; i < runs; i++)
                using (model.Generate(generation, seeds)) { }
        }

        // Warm-up: allocator pools, lazily created optimiser state, JIT.
        trainer.Train(images, 40, progress: _ => { }, reportEvery: 20);
        Sample(3);
        Settle();
        long liveBefore = LiveTensors();
        double rssBefore = ResidentMiB();

        // Training with progress reports, models made and dropped, sampling runs.
        for (int round = 0; round < 3; round++)
        {
            trainer.Train(images, 80, progress: _ => { }, reportEvery: 20);
            Sample(7);
        }
        Settle();
        long liveAfter = LiveTensors();
        double rssAfter = ResidentMiB();
        double growth = (rssAfter - rssBefore) / rssBefore * 100;
        output.WriteLine($"live tensors {liveBefore} → {liveAfter}; RSS {rssBefore:F1} → {rssAfter:F1} MiB ({growth:+0.00;-0.00} %)");

        Assert.Equal(liveBefore, liveAfter);
        if (double.IsFinite(growth)) Assert.True(growth < 5, $"resident memory grew by {growth:F2} % (limit 5 %)");
    }

    [Theory]
    [InlineData(ConditionKind.None)]
    [InlineData(ConditionKind.Class)]
    [InlineData(ConditionKind.Vector)]
    [InlineData(ConditionKind.Text)]
    public void BuildingAndDisposingANetworkLeavesNoTensorsBehindAndKeepsEveryWeight(ConditionKind kind)
    {
        // TorchSharp's layer initialisers return wrappers nobody disposes; each keeps a weight alive.
        var network = new UNetOptions
        {
            ImageChannels = 1, ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8],
            Condition = new ConditioningOptions { Kind = kind, ClassCount = 3, VectorSize = 5, VocabularySize = 20, MaxTokens = 4, TextWidth = 16, TextLayers = 1, TextHeads = 2 },
        };
        long before = LiveTensors();
        new UNetNoisePredictor(network).Dispose();
        Assert.Equal(before, LiveTensors());

        // And every weight the forward pass uses is still a parameter: saved, loaded and trained.
        manual_seed(1);
        using var a = new UNetNoisePredictor(network);
        using (no_grad()) foreach (var p in a.parameters()) p.add_(rand_like(p));
        using var stream = new MemoryStream();
        a.save(new BinaryWriter(stream));
        stream.Position = 0;
        manual_seed(2);
        using var b = new UNetNoisePredictor(network);
        b.load(new BinaryReader(stream), strict: true);
        a.eval();
        b.eval();
        using var scope = NewDisposeScope();
        var x = randn(2, 1, 16, 16);
        var t = tensor(new long[] { 5, 500 });
        using var condition = kind switch
        {
            ConditionKind.Class => ConditionBatch.Classes(tensor(new long[] { 0, 2 })),
            ConditionKind.Vector => ConditionBatch.Vectors(randn(2, 5)),
            ConditionKind.Text => ConditionBatch.Tokens(tensor(new long[] { 1, 2, 0, 0, 3, 4, 5, 0 }).reshape(2, 4)),
            _ => null,
        };
        var difference = (a.Forward(x, t, condition) - b.Forward(x, t, condition)).abs().max().item<float>();
        Assert.Equal(0f, difference);
    }

    private static long LiveTensors() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    private static void Settle()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    private static double ResidentMiB()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return double.NaN;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
    }
}
