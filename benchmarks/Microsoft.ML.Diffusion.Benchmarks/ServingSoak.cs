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
/// Memory of <see cref="DiffusionGenerationService"/> over many requests: 1,000 single-image requests (quick: 96) from 8
/// closed-loop clients on the bench network, 20 steps (quick 5) of DPM-Solver++, DDIM and Euler ancestral in turn, every
/// tenth request abandoned after its second step. After a warm-up round, the requests run in 12 rounds (quick 6), and after
/// each the resident memory, the native heap and the managed heap are read after a full collection.
/// </summary>
/// <remarks>
/// Flat means what the library's memory tests mean (tests/…/Infrastructure/MemoryTrend.cs): after a round, memory in use is a
/// floor plus what the round left in caches and pools, and a leak keeps lifting the floor. The readings are cut into thirds
/// and each third's floor (its lowest reading) taken; a measure grows when its floor rises by more than its budget from the
/// first third to the second and from the second to the third.
/// </remarks>
internal static class ServingSoak
{
    public sealed record Reading(int Requests, double Seconds, double ResidentMiB, double NativeHeapMiB, double ManagedHeapMiB);

    public sealed record Measure(string Name, double BudgetMiB, double[] Floors, bool Grows);

    public sealed record Result(string Network, int Requests, int Clients, int Steps, int Abandoned, double Seconds, Reading[] Readings, Measure[] Measures, bool Flat);

    private const int Clients = 8;
    private static readonly string[] Samplers = [SamplerName.DpmSolverPlusPlus.Value, SamplerName.Ddim.Value, SamplerName.EulerAncestral.Value];

    // The rise of a third's floor that counts as growth: the budgets of the library's memory tests.
    private static readonly (string Name, double BudgetMiB, Func<Reading, double> Value)[] Measures =
    [
        ("resident memory", 16, r => r.ResidentMiB),
        ("native heap", 2, r => r.NativeHeapMiB),
        ("managed heap", 0.25, r => r.ManagedHeapMiB),
    ];

    public static Result Run(BenchmarkOptions options, Action<string> log)
    {
        int requests = options.ServingSoakRequests ?? (options.Quick ? 96 : 1000);
        int rounds = options.Quick ? 6 : 12;
        int steps = options.Quick ? 5 : 20;
        var config = BenchmarkConfig.Create("bench", options);
        manual_seed(0);
        var network = NoisePredictors.Create(config.Network);
        using var model = new DiffusionModel(network, new NoiseScheduleOptions(), Process.PredictionType.Epsilon);
        using var service = new DiffusionGenerationService(model);
        log($"[serving-soak] {config.Description}: {requests} requests from {Clients} clients, {steps} steps each, in {rounds} rounds after a warm-up of {Clients * 4}");

        int abandoned = 0;
        var clock = Stopwatch.StartNew();
        RunRound(service, -Clients * 4, Clients * 4, steps, ref abandoned);   // warm-up: caches and pools fill
        abandoned = 0;
        var readings = new List<Reading>();
        int done = 0;
        for (int round = 0; round < rounds; round++)
        {
            int end = (int)((long)requests * (round + 1) / rounds);
            RunRound(service, done, end - done, steps, ref abandoned);
            done = end;
            ProcessMemory.CollectGarbage();
            var reading = new Reading(done, clock.Elapsed.TotalSeconds, ProcessMemory.ResidentMiB(), ProcessMemory.NativeHeapMiB(), GC.GetTotalMemory(forceFullCollection: true) / (double)(1 << 20));
            readings.Add(reading);
            log($"[serving-soak] {reading.Seconds,7:F1} s  {done,5} requests  RSS {reading.ResidentMiB,7:F1} MiB  native heap {reading.NativeHeapMiB,6:F1} MiB  managed heap {reading.ManagedHeapMiB,5:F2} MiB");
        }

        var measures = Measures.Select(m =>
        {
            var series = readings.Select(m.Value).ToArray();
            if (series.Any(double.IsNaN)) return new Measure(m.Name, m.BudgetMiB, [], false);   // not measurable here
            var floors = Floors(series);
            return new Measure(m.Name, m.BudgetMiB, floors, floors[1] - floors[0] > m.BudgetMiB && floors[2] - floors[1] > m.BudgetMiB);
        }).ToArray();
        bool flat = measures.All(m => !m.Grows);
        foreach (var m in measures.Where(m => m.Floors.Length > 0))
            log($"[serving-soak] {m.Name}: floors of the thirds {string.Join(" → ", m.Floors.Select(f => f.ToString("F1")))} MiB (budget {m.BudgetMiB} MiB a third) → {(m.Grows ? "GROWS" : "flat")}");
        return new Result(config.Description, requests, Clients, steps, abandoned, clock.Elapsed.TotalSeconds, [.. readings], measures, flat);
    }

    // Requests first … first + count − 1 from closed-loop clients; every tenth is abandoned after its second step.
    private static void RunRound(DiffusionGenerationService service, int first, int count, int steps, ref int abandoned)
    {
        int next = first - 1, last = first + count - 1, cancelled = 0;
        Task.WaitAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) is var i && i <= last)
            {
                var request = new GenerationRequest { Seed = i, Options = new GenerationOptions { Sampler = Samplers[(i % 3 + 3) % 3], Steps = steps } };
                if (i % 10 != 0)
                {
                    await service.GenerateAsync(request);
                    continue;
                }
                using var leave = new CancellationTokenSource();
                // Progress runs on the worker between steps: the request leaves its batch before the next one.
                var progress = new InlineProgress(p => { if (p.StepsDone == 2) leave.Cancel(); });
                try
                {
                    await service.GenerateAsync(request, progress, leave.Token);
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref cancelled);
                }
            }
        })).ToArray());
        abandoned += cancelled;
    }

    private static double[] Floors(double[] series)
    {
        int third = series.Length / 3;
        return [.. Enumerable.Range(0, 3).Select(k => series.Skip(k * third).Take(third).Min())];
    }

    public static string Markdown(Result r)
    {
        var lines = new List<string>
        {
            $"{r.Requests} requests ({r.Abandoned} abandoned after two steps) from {r.Clients} clients, {r.Network}, {r.Steps} steps, {r.Seconds:F0} s",
            "",
            "| requests | seconds | resident memory | native heap | managed heap |",
            "| ---: | ---: | ---: | ---: | ---: |",
        };
        lines.AddRange(r.Readings.Select(x => $"| {x.Requests} | {x.Seconds:F0} | {x.ResidentMiB:F1} MiB | {x.NativeHeapMiB:F1} MiB | {x.ManagedHeapMiB:F2} MiB |"));
        lines.Add("");
        foreach (var m in r.Measures.Where(m => m.Floors.Length > 0))
            lines.Add($"- {m.Name}: floors of the thirds {string.Join(" → ", m.Floors.Select(f => $"{f:F1}"))} MiB (budget {m.BudgetMiB} MiB a third): {(m.Grows ? "**grows**" : "flat")}");
        lines.Add("");
        lines.Add(r.Flat ? "Memory stays flat." : "Memory grows.");
        return string.Join(Environment.NewLine, lines) + Environment.NewLine;
    }

    private sealed class InlineProgress(Action<GenerationProgress> report) : IProgress<GenerationProgress>
    {
        public void Report(GenerationProgress value) => report(value);
    }
}
