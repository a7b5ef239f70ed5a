using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The sample's steps, callable from tests on a small fixture.</summary>
public static class PretrainedDiffusersSample
{
    public const int DefaultSteps = 50;   // DDIM-like samplers; the folder's own scheduler is kept unless it is DDPM (1,000 steps)

    /// <summary>What the sample wrote.</summary>
    public sealed record Result(string OutputFolder, string ModelZip, string Grid, string Sampler, int Steps, long[] ImageShape);

    private sealed class SeedRow
    {
        public long Seed { get; set; }
    }

    public static Result Run(string diffusersFolder, string outDir, int count, int steps, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        var clock = Stopwatch.StartNew();
        var ml = new MLContext(seed: 0);

        // 1. The diffusers folder as a model, and the sampler settings of its scheduler. DDPM's 1,000 steps are slow on a
        //    CPU: its network works as well with DDIM, which reads the same schedule.
        using var model = DiffusersFormat.Load(diffusersFolder);
        var scheduler = GenerationOptions.FromDiffusers(diffusersFolder);
        string schedulerSampler = scheduler.Sampler.ToString();
        if (schedulerSampler == "ddpm") scheduler.Sampler = "ddim";
        var shape = model.ImageShape;
        log.WriteLine($"'{diffusersFolder}': UNet2DModel of {shape[0]}×{shape[1]}×{shape[2]} images, {model.Network.parameters().Sum(p => p.numel()):N0} parameters, " +
                      $"{model.ScheduleOptions.Kind} schedule, {model.Prediction} prediction; its scheduler samples with {schedulerSampler}, here {scheduler.Sampler} in {steps} steps.");

        // 2. DiffusionGenerate in an ML.NET pipeline: one image per seed row, as ExtractPixels-style floats.
        var seeds = ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => new SeedRow { Seed = i }).ToList());
        var options = new DiffusionGenerationOptions
        {
            OutputColumnName = "Pixels",
            SeedColumnName = nameof(SeedRow.Seed),
            OutputKind = GeneratedOutputKind.Pixels,
            Generation = scheduler with { Steps = steps },   // the folder's scheduler settings, at this sample's step count
        };
        var generator = ml.Transforms.DiffusionGenerate(model, options).Fit(seeds);

        // 3. Saved as an ML.NET model zip and loaded back in a fresh context: the zip carries the network and the settings.
        string zip = Path.Combine(outDir, "pretrained.zip");
        ml.Model.SaveAtomically(generator, seeds.Schema, zip);
        var reloaded = new MLContext(seed: 0).Model.Load(zip, out _);
        var images = reloaded.Transform(seeds);
        var pixels = new List<float[]>(count);
        using (var cursor = images.GetRowCursor([images.Schema["Pixels"]]))
        {
            var getter = cursor.GetGetter<VBuffer<float>>(images.Schema["Pixels"]);
            VBuffer<float> buffer = default;
            while (cursor.MoveNext())
            {
                getter(ref buffer);
                pixels.Add(buffer.DenseValues().ToArray());
            }
        }
        string grid = Path.Combine(outDir, "samples.png");
        PixelRows.SaveGrid(pixels, (int)shape[0], (int)shape[1], (int)shape[2], grid, columns: 8, scale: shape[1] >= 64 ? 1 : 4);
        (reloaded as IDisposable)?.Dispose();
        log.WriteLine($"Wrote {count} images to '{grid}' and the model zip to '{zip}' in {clock.Elapsed.TotalSeconds:F0} s.");
        return new Result(outDir, zip, grid, scheduler.Sampler.ToString(), steps, shape);
    }
}
