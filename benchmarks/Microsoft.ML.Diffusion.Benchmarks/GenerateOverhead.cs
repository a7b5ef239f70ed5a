using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// The cost of generating through <c>DiffusionGenerate</c> (an IDataView with a seed column, batched
/// look-ahead, conversion to pixel vectors) against calling <see cref="Microsoft.ML.Diffusion.Pipelines.DiffusionPipelines.Generate"/>
/// directly on the same seeds in the same batches. Each side runs twice, alternating; the faster run counts.
/// </summary>
internal static class GenerateOverhead
{
    public sealed record Result(int Images, int Batch, string Sampler, int Steps, double DirectSeconds, double PipelineSeconds, double OverheadPercent);

    public static Result Run(BenchmarkOptions options, Action<string> log)
    {
        int images = options.Quick ? 64 : 256, batch = 64, steps = options.Quick ? 5 : 20;
        var config = BenchmarkConfig.Create("bench", options);
        manual_seed(0);
        var network = NoisePredictors.Create(config.Network);
        using var model = new DiffusionModel(network, new NoiseScheduleOptions(), Process.PredictionType.Epsilon);
        var generation = new GenerationOptions { Sampler = SamplerName.DpmSolverPlusPlus, Steps = steps };
        var seeds = Enumerable.Range(0, images).Select(i => (long)i).ToArray();

        double Direct()
        {
            var clock = Stopwatch.StartNew();
            for (int start = 0; start < images; start += batch)
            {
                using var result = model.Generate(generation, seeds[start..Math.Min(images, start + batch)]);
                _ = result.data<float>().ToArray();   // the pipeline also brings pixels to the host
            }
            return clock.Elapsed.TotalSeconds;
        }

        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(seeds.Select(s => new SeedRow { Seed = (int)s }));
        var transformer = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.DpmSolverPlusPlus, Steps = steps },
            OutputKind = GeneratedOutputKind.Pixels, BatchSize = batch,
        }).Fit(data);
        double Pipeline()
        {
            var clock = Stopwatch.StartNew();
            int rows = transformer.Transform(data).GetColumn<VBuffer<float>>("Generated").Count();
            if (rows != images) throw new InvalidOperationException($"expected {images} rows, got {rows}");
            return clock.Elapsed.TotalSeconds;
        }

        Direct();   // warm-up (JIT, allocator)
        double direct = double.MaxValue, pipeline = double.MaxValue;
        for (int i = 0; i < 2; i++)
        {
            direct = Math.Min(direct, Direct());
            pipeline = Math.Min(pipeline, Pipeline());
            log($"overhead run {i + 1}: direct {direct:F2} s, DiffusionGenerate {pipeline:F2} s");
        }
        return new Result(images, batch, "DPM-Solver++", steps, direct, pipeline, (pipeline / direct - 1) * 100);
    }

    private sealed class SeedRow
    {
        public int Seed { get; set; }
    }
}
