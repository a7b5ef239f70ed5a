using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Imaging;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Transforms.Image;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The quick start's settings; the defaults are the real run, tests shrink them.</summary>
public sealed class QuickStartOptions
{
    /// <summary>Optimiser steps.</summary>
    public int Steps { get; set; } = QuickStartSample.DefaultSteps;

    /// <summary>Built-in shape images to train on.</summary>
    public int TrainingImages { get; set; } = 512;

    /// <summary>Channels of the UNet's first level.</summary>
    public int BaseChannels { get; set; } = 32;

    /// <summary>Images per grid (one per seed 0, 1, …).</summary>
    public int Samples { get; set; } = 32;

    /// <summary>Diffusion steps T.</summary>
    public int DiffusionSteps { get; set; } = 1000;

    /// <summary>Side of the grid cells: ResizeImages upscales the 16×16 samples to it.</summary>
    public int DisplaySize { get; set; } = 64;

    /// <summary>Training steps between progress lines.</summary>
    public int ReportEvery { get; set; } = 100;
}

/// <summary>
/// The main job: an ML.NET pipeline trains a diffusion model on the built-in shapes, saves it as a zip,
/// a fresh MLContext loads it, and generation pipelines (one per sampler) upscale and extract the pixels
/// of what they make into PNG grids.
/// </summary>
public static class QuickStartSample
{
    public const int DefaultSteps = 1000;
    public const int ImageSize = 16;   // what the model sees

    /// <summary>One sampler's grid.</summary>
    public sealed record Grid(string Sampler, int Steps, string Path, double Seconds);

    /// <summary>What the sample wrote.</summary>
    public sealed record Result(string OutputFolder, string ModelZip, string TrainingGrid, IReadOnlyList<Grid> Grids, double StepsPerSecond);

    public static Result Run(string outDir, QuickStartOptions options, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(options);
        Directory.CreateDirectory(outDir);
        var clock = Stopwatch.StartNew();

        // 1. The built-in shapes as an IDataView: one 1×16×16 float vector per row, pixels in [0, 1].
        var ml = new MLContext(seed: 0);
        var pixels = SyntheticShapes.GeneratePixels(options.TrainingImages, ImageSize, seed: 0);
        var shapes = ml.Data.LoadFromEnumerable(pixels.Select(p => new ShapeRow { Pixels = p }).ToList());
        string trainingGrid = Path.Combine(outDir, "training-data.png");
        SaveGrid(pixels.Take(options.Samples).Select(p => p.Select(v => v * 255f).ToArray()).ToArray(), ImageSize, trainingGrid,
            scale: Math.Max(1, options.DisplaySize / ImageSize));
        log.WriteLine($"Device: {DiffusionDevice.Resolve()}. Training {options.Steps} steps on {options.TrainingImages} built-in {ImageSize}×{ImageSize} shape images ({trainingGrid}).");

        // 2. Train with ML.NET and save the fitted pipeline as a zip.
        var training = ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions
        {
            ImageColumnName = nameof(ShapeRow.Pixels),
            ImageChannels = 1,
            PixelRange = PixelRange.Unit,
            BaseChannels = options.BaseChannels,
            ChannelMultipliers = [1, 2],
            AttentionResolutions = [8],
            Schedule = new() { TrainSteps = options.DiffusionSteps },
            TrainingSteps = options.Steps,
            BatchSize = 32,
            LearningRate = 1e-3,
            WarmupSteps = Math.Min(100, options.Steps / 4),
            EmaDecay = 0.995,
            Seed = 0,
            ReportEvery = Math.Max(1, Math.Min(options.ReportEvery, options.Steps)),
            Progress = p => log.WriteLine($"  step {p.Step,5}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:E1}  {p.StepsPerSecond:F1} steps/s"),
        });
        var trainClock = Stopwatch.StartNew();
        var trained = training.Fit(shapes);
        double trainSeconds = trainClock.Elapsed.TotalSeconds;
        double stepsPerSecond = options.Steps / trainSeconds;
        string modelZip = Path.Combine(outDir, "shapes-model.zip");
        ml.Model.SaveAtomically(trained, shapes.Schema, modelZip);
        log.WriteLine($"Trained {options.Steps} steps in {trainSeconds:F0} s ({stepsPerSecond:F1} steps/s); saved {modelZip}");

        // 3. A fresh MLContext loads the zip; per sampler, DiffusionGenerate → ResizeImages → ConvertToGrayscale → ExtractPixels.
        var app = new MLContext(seed: 1);
        var loaded = app.Model.Load(modelZip, out _);
        var seeds = app.Data.LoadFromEnumerable(Enumerable.Range(0, options.Samples).Select(i => new SeedRow { Seed = i }).ToList());
        var grids = new List<Grid>();
        foreach (var (sampler, name, steps) in new[]
        {
            (SamplerName.DpmSolverPlusPlus, "dpmsolver", 20),
            (SamplerName.Ddim, "ddim", 50),
            (SamplerName.EulerAncestral, "euler-ancestral", 30),
            (SamplerName.Heun, "heun", 15),
        })
        {
            var samplerClock = Stopwatch.StartNew();
            var generation = app.Transforms.DiffusionGenerate(loaded, new DiffusionGenerationOptions
                {
                    OutputColumnName = "Generated", SeedColumnName = nameof(SeedRow.Seed), Generation = { Sampler = sampler, Steps = steps },
                })
                .Append(app.Transforms.ResizeImages("Large", options.DisplaySize, options.DisplaySize, "Generated"))   // 16×16 → 64×64
                .Append(app.Transforms.ConvertToGrayscale("Grey", "Large"))
                .Append(app.Transforms.ExtractPixels("Pixels", "Grey", ImagePixelExtractingEstimator.ColorBits.Red))   // 1×64×64, 0–255
                .Fit(seeds);
            var generated = generation.Transform(seeds).GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()).ToArray();
            string grid = Path.Combine(outDir, $"samples-{name}-{steps}-steps.png");
            SaveGrid(generated, options.DisplaySize, grid, scale: 1);
            grids.Add(new Grid(sampler.ToString(), steps, grid, samplerClock.Elapsed.TotalSeconds));
            log.WriteLine($"{sampler}, {steps} steps: {generated.Length} images in {samplerClock.Elapsed.TotalSeconds:F1} s → {grid}");
        }

        log.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F0} s.");
        log.WriteLine($"Model zip: {Path.GetFullPath(modelZip)}");
        foreach (var grid in grids) log.WriteLine($"Grid ({grid.Sampler}, {grid.Steps} steps): {Path.GetFullPath(grid.Path)}");
        log.WriteLine($"Training images: {Path.GetFullPath(trainingGrid)}");
        return new Result(outDir, modelZip, trainingGrid, grids, stepsPerSecond);
    }

    // Grey pixels in ExtractPixels' 0–255 range, one row per image, written as one PNG grid.
    private static void SaveGrid(float[][] images, int size, string path, int scale)
    {
        var flat = new float[images.Length * size * size];
        for (int i = 0; i < images.Length; i++)
            for (int j = 0; j < size * size; j++)
                flat[i * size * size + j] = images[i][j] / 127.5f - 1f;   // ImageGrid takes [−1, 1]
        using var batch = tensor(flat, [images.Length, 1, size, size]);
        ImageGrid.SavePng(batch, path, columns: 8, scale: scale);
    }

    private sealed class ShapeRow
    {
        [VectorType(1, ImageSize, ImageSize)]
        public float[] Pixels { get; set; } = [];
    }

    private sealed class SeedRow
    {
        public int Seed { get; set; }
    }
}
