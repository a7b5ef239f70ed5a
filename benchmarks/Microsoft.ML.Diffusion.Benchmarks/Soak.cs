using System.Diagnostics;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Memory soak: many training steps (through <see cref="DiffusionTrainer.Train"/>) and sampling runs
/// (through <see cref="Microsoft.ML.Diffusion.Pipelines.DiffusionPipelines.Generate"/>), comparing RSS after a warm-up with RSS at the end.
/// Native memory that is leaked (tensors nobody disposes, scopes that keep growing) shows up as growth.
/// </summary>
internal static class Soak
{
    public static SoakResult Run(BenchmarkOptions options, VersionsInfo versions, Action<string> log)
    {
        var config = BenchmarkConfig.Create("bench", options);
        var net = config.Network;
        int batch = options.SoakBatch;
        int trainSteps = options.EffectiveSoakTrainSteps;
        int runs = options.EffectiveSoakSamplingRuns;
        int warmTrain = Math.Max(50, trainSteps / 20), warmRuns = Math.Max(5, runs / 20);
        var generation = new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 10 };
        var trace = new List<double[]>();
        var clock = Stopwatch.StartNew();
        void Mark(string phase, double progress)
        {
            ProcessMemory.CollectGarbage();
            double rss = ProcessMemory.ResidentMiB();
            trace.Add([clock.Elapsed.TotalSeconds, rss]);
            log($"[soak] {clock.Elapsed.TotalSeconds,7:F1} s  {phase,-22} RSS {rss,8:F1} MiB" + (progress >= 0 ? $"  ({progress:P0})" : ""));
        }

        using var images = (rand([256, net.ImageChannels, net.ImageSize, net.ImageSize], generator: new TorchSharp.torch.Generator(5)) * 2 - 1).DetachFromDisposeScope();
        using var trainer = new DiffusionTrainer(net, options: new DiffusionTrainerOptions { BatchSize = batch, Seed = 1 }, device: CPU);
        var seeds = Enumerable.Range(1, batch).Select(i => (long)i).ToArray();
        log($"[soak] {config.Description}, batch {batch}: {trainSteps} training steps, {runs} sampling runs (DDIM 10 steps); warm-up {warmTrain} steps + {warmRuns} runs");

        Mark("start", -1);
        trainer.Train(images, warmTrain);
        SampleRuns(trainer, generation, seeds, warmRuns);
        Mark("after warm-up", -1);
        double warm = trace[^1][1];

        int chunk = Math.Max(1, trainSteps / 6);
        for (int done = 0; done < trainSteps; done += chunk)
        {
            trainer.Train(images, Math.Min(chunk, trainSteps - done), progress: _ => { }, reportEvery: 50);
            Mark("training", (double)Math.Min(done + chunk, trainSteps) / trainSteps);
        }
        int runChunk = Math.Max(1, runs / 4);
        for (int done = 0; done < runs; done += runChunk)
        {
            SampleRuns(trainer, generation, seeds, Math.Min(runChunk, runs - done));
            Mark("sampling", (double)Math.Min(done + runChunk, runs) / runs);
        }
        double end = trace[^1][1];
        double growth = (end - warm) / warm * 100.0;
        bool passed = growth < options.SoakMaxGrowthPercent;
        log($"[soak] RSS after warm-up {warm:F1} MiB, at the end {end:F1} MiB: growth {growth:+0.00;-0.00} % (limit {options.SoakMaxGrowthPercent} %) → {(passed ? "PASS" : "FAIL")}");
        return new SoakResult("TorchSharp", DateTimeOffset.UtcNow.ToString("O"), versions, config.Description, batch, trainSteps, runs,
            "DDIM 10 steps via DiffusionModel.Generate (a fresh model from trainer.ToModel() every 10 runs)", warm, end, growth,
            options.SoakMaxGrowthPercent, passed, ProcessMemory.PeakResidentMiB(), trace.ToArray(), clock.Elapsed.TotalSeconds);
    }

    private static void SampleRuns(DiffusionTrainer trainer, GenerationOptions generation, long[] seeds, int runs)
    {
        DiffusionModel? model = null;
        try
        {
            for (int i = 0; i < runs; i++)
            {
                if (i % 10 == 0)
                {
                    model?.Dispose();
                    model = trainer.ToModel();
                }
                using var images = model!.Generate(generation, seeds);
            }
        }
        finally
        {
            model?.Dispose();
        }
    }
}
