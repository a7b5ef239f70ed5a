using System.Diagnostics;
using Microsoft.ML.Diffusion.Networks;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Seconds per image of one inference forward pass of the bench network at several batch sizes. Guidance
/// doubles the batch a sampler sends through the network, so a batch size past which the time per image
/// grows is where splitting the forward pays.
/// </summary>
internal static class ForwardBatchScaling
{
    public static void Run(BenchmarkOptions options, Action<string> log)
    {
        var config = BenchmarkConfig.Create("bench", options);
        manual_seed(0);
        using var network = NoisePredictors.Create(config.Network);
        network.eval();
        Console.WriteLine("| batch | forward s | s per image |");
        Console.WriteLine("| ---: | ---: | ---: |");
        foreach (int batch in new[] { 16, 32, 64, 128, 256 })
        {
            using var inference = inference_mode();
            using var x = randn(batch, config.Network.ImageChannels, config.Network.ImageSize, config.Network.ImageSize);
            using var t = randint(0, 1000, [batch], dtype: ScalarType.Int64);
            var times = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                long start = Stopwatch.GetTimestamp();
                using (network.forward(x, t)) { }
                if (i > 0) times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);   // the first is warm-up
            }
            double median = times.Order().ElementAt(times.Count / 2);
            Console.WriteLine($"| {batch} | {median:F4} | {median / batch:F5} |");
            log($"[forward] batch {batch}: {median:F4} s");
        }
    }
}
