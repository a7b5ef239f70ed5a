using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>One condition's step times of the two network families, measured round-robin.</summary>
internal sealed record NetworkTimingRow(string Condition, long OwnUNetParameters, long UNet2DParameters,
    double OwnUNetSecondsPerStep, double UNet2DSecondsPerStep, double Ratio);

internal sealed record NetworkTimingReport(string Timestamp, VersionsInfo Versions, int Batch, int StepsPerRound, int Rounds, NetworkTimingRow[] Rows);

/// <summary>
/// The step time of TrainDiffusion's default network (diffusers' UNet2DModel of the bench shape) against the library's
/// own UNet of the same shape: the bench network at batch 64 on Fashion-MNIST with TrainDiffusion's recipe (v target,
/// Min-SNR-5, peak 2e-3 with a cosine decay), unconditional and class-conditional. The two trainers take turns, so a busy
/// core slows both alike; the median round gives each one's step time.
/// </summary>
internal static class NetworkTiming
{
    private const int Rounds = 5;

    public static NetworkTimingReport Run(BenchmarkOptions options, VersionsInfo versions, Action<string> log)
    {
        int steps = Math.Max(1, options.RecipeTimingSteps);
        var recipe = RecipeSearch.All(2437).First(r => r.Name == "lr-2e-3-cosine-v-min-snr-5");
        using var images = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] labels);
        using var labelTensor = tensor(labels);
        var rows = new List<NetworkTimingRow>();
        foreach (bool classes in new[] { false, true })
        {
            var shape = classes ? FashionQualityTraining.Network : RecipeSearch.Shape;
            using var conditions = classes ? ConditionBatch.Classes(labelTensor) : null;
            var networks = new[] { BenchmarkNetworks.For(BenchmarkNetworks.OwnUNet, shape), BenchmarkNetworks.For(BenchmarkNetworks.UNet2D, shape) };
            var trainers = networks.Select(n => new DiffusionTrainer(n, recipe.Schedule, recipe.Trainer, CPU)).ToArray();
            try
            {
                foreach (var t in trainers) t.Train(images, 2, conditions: conditions);
                var times = trainers.Select(_ => new List<double>()).ToArray();
                for (int round = 0; round < Rounds; round++)
                    for (int i = 0; i < trainers.Length; i++)
                    {
                        var clock = Stopwatch.StartNew();
                        trainers[i].Train(images, steps, conditions: conditions);
                        times[i].Add(clock.Elapsed.TotalSeconds / steps);
                    }
                double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
                long Parameters(DiffusionTrainer t) => t.Network.parameters().Sum(p => p.numel());
                var row = new NetworkTimingRow(classes ? "class (10)" : "none", Parameters(trainers[0]), Parameters(trainers[1]),
                    Median(times[0]), Median(times[1]), Median(times[1]) / Median(times[0]));
                rows.Add(row);
                log($"[networks] {row.Condition}: unet {row.OwnUNetSecondsPerStep * 1000:F0} ms/step, unet2d {row.UNet2DSecondsPerStep * 1000:F0} ms/step ({row.Ratio:F3}×)");
            }
            finally
            {
                foreach (var t in trainers) t.Dispose();
            }
        }
        return new NetworkTimingReport(DateTimeOffset.UtcNow.ToString("O"), versions, 64, steps, Rounds, [.. rows]);
    }

    public static string Markdown(NetworkTimingReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var b = new StringBuilder();
        b.AppendLine(inv, $"Bench network (1×28×28, channels 32/64/64, attention at 7×7), batch {r.Batch}, Fashion-MNIST, TrainDiffusion's recipe; {r.StepsPerRound} steps per network and round, {r.Rounds} rounds, median.");
        b.AppendLine();
        b.AppendLine("| condition | own UNet parameters | UNet2DModel parameters | own UNet ms/step | UNet2DModel ms/step | UNet2DModel / own UNet |");
        b.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var row in r.Rows)
            b.AppendLine(inv, $"| {row.Condition} | {row.OwnUNetParameters:N0} | {row.UNet2DParameters:N0} | {row.OwnUNetSecondsPerStep * 1000:F0} | {row.UNet2DSecondsPerStep * 1000:F0} | {row.Ratio:F3}× |");
        return b.ToString();
    }
}
