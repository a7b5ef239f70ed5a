using System.Diagnostics;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Serving;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Load on <see cref="DiffusionGenerationService"/>: 1, 4, 8 and 16 closed-loop clients (each sends its next request when
/// the last one returns) of single-image requests on the bench network (DPM-Solver++ 20), served one at a time, batched
/// with fixed 4-row forwards (images the same bits as alone), and batched with one forward per batch. Throughput and
/// p50/p95 latency per row.
/// </summary>
internal static class ServingLoad
{
    public sealed record Row(string Mode, int Clients, int Requests, double Seconds, double ImagesPerSecond, double P50Ms, double P95Ms);

    public static IReadOnlyList<Row> Run(BenchmarkOptions options, Action<string> log)
    {
        int steps = options.Quick ? 5 : 20;
        var config = BenchmarkConfig.Create("bench", options);
        manual_seed(0);
        var network = NoisePredictors.Create(config.Network);
        using var model = new DiffusionModel(network, new NoiseScheduleOptions(), Process.PredictionType.Epsilon);
        var modes = new (string Name, GenerationServiceOptions Options)[]
        {
            ("one at a time", new GenerationServiceOptions { MaxBatchSize = 1, ForwardRows = 1, BatchWindow = TimeSpan.Zero }),
            ("batched, 4-row forwards", new GenerationServiceOptions { MaxBatchSize = 16, ForwardRows = 4 }),
            ("batched, one forward", new GenerationServiceOptions { MaxBatchSize = 16, ForwardRows = null }),
        };
        var rows = new List<Row>();
        foreach (int clients in new[] { 1, 4, 8, 16 })
            foreach (var (name, serviceOptions) in modes)
            {
                int requests = Math.Max(clients * (options.Quick ? 2 : 4), options.Quick ? 4 : 12);
                using var service = new DiffusionGenerationService(model, serviceOptions);
                service.GenerateAsync(Request(-1, steps)).GetAwaiter().GetResult();   // warm-up
                var latencies = new List<double>();
                int next = 0;
                var clock = Stopwatch.StartNew();
                Task.WaitAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
                {
                    while (Interlocked.Increment(ref next) is var i && i <= requests)
                    {
                        long start = Stopwatch.GetTimestamp();
                        await service.GenerateAsync(Request(i, steps));
                        lock (latencies) latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    }
                })).ToArray());
                double seconds = clock.Elapsed.TotalSeconds;
                latencies.Sort();
                var row = new Row(name, clients, requests, seconds, requests / seconds, Percentile(latencies, 0.50), Percentile(latencies, 0.95));
                log($"[serving] {name}, {clients} clients: {row.ImagesPerSecond:F2} images/s, p50 {row.P50Ms:F0} ms, p95 {row.P95Ms:F0} ms");
                rows.Add(row);
            }
        return rows;
    }

    private static GenerationRequest Request(long seed, int steps) => new() { Seed = seed, Options = new GenerationOptions { Sampler = SamplerName.DpmSolverPlusPlus, Steps = steps } };

    private static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];

    public static string Markdown(IReadOnlyList<Row> rows)
    {
        var lines = new List<string> { "| clients | mode | requests | images/s | p50 latency | p95 latency |", "| ---: | --- | ---: | ---: | ---: | ---: |" };
        lines.AddRange(rows.Select(r => $"| {r.Clients} | {r.Mode} | {r.Requests} | {r.ImagesPerSecond:F2} | {r.P50Ms:F0} ms | {r.P95Ms:F0} ms |"));
        return string.Join(Environment.NewLine, lines) + Environment.NewLine;
    }
}
