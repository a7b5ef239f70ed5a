using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Imaging;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>Settings of <see cref="LoraTrainingSample.Run"/>; the defaults are the real run, tests shrink them.</summary>
public sealed record LoraTrainingSampleOptions
{
    /// <summary>A model zip of 28×28 grey images to start from (e.g. an earlier run's base-model.zip); null trains one.</summary>
    public string? BaseModel { get; init; }
    public int BaseSteps { get; init; } = 600;
    public int? BaseImages { get; init; } = 12_000;      // of the 60,000 training images
    public int BaseChannels { get; init; } = 16;
    public int[] ChannelMultipliers { get; init; } = [1, 2, 2];

    /// <summary>The handful of images the LoRA learns from: the first test images, inverted (dark clothes on white).</summary>
    public int LoraImages { get; init; } = 16;
    public int LoraRank { get; init; } = 4;
    public int LoraSteps { get; init; } = 400;
    public double LoraLearningRate { get; init; } = 2e-3;

    /// <summary>
    /// The layers the LoRA adapts: the attention projections and the residual blocks' layers (null: attention only, which
    /// turns most samples light within the same steps but loses their shapes: inverting every pixel needs the convolutions).
    /// </summary>
    public IReadOnlyList<string>? LoraTargets { get; init; } = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut", "time_emb_proj"];

    /// <summary>Images per grid, seeds 1000, 1001, … for the base model and the LoRA alike.</summary>
    public int Samples { get; init; } = 32;
    public int SamplingSteps { get; init; } = 20;
}

/// <summary>
/// A LoRA with ML.NET: TrainDiffusion trains (or a zip gives) a small unconditional Fashion-MNIST model; TrainDiffusion
/// with StartFrom and Lora trains a rank-4 LoRA on 16 inverted images (dark clothes on white) with the base frozen; the
/// adapter is saved in diffusers' layout, loaded back from its file, and DiffusionGenerate draws the same seeds before
/// and after. The light-background share of each grid shows what the LoRA learned.
/// </summary>
public static class LoraTrainingSample
{
    public const int ImageSize = FashionMnist.ImageSize;

    /// <summary>What one grid of samples looks like: its mean brightness (0 black, 1 white) and the share of images whose corners are light.</summary>
    public sealed record Look(double MeanBrightness, double LightBackgroundShare);

    /// <summary>What the sample wrote and measured.</summary>
    public sealed record Result(string OutputFolder, string BaseModelZip, string Adapter, string BeforeGrid, string AfterGrid, string TrainingGrid,
        string TrainingImagesFolder, Look Before, Look After, Look Target, double BaseSeconds, double LoraSeconds, double TotalSeconds);

    public static Result Run(string outDir, LoraTrainingSampleOptions options, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(options);
        Directory.CreateDirectory(outDir);
        if (!FashionMnist.IsAvailable(out string reason)) throw new FileNotFoundException(reason);
        var clock = Stopwatch.StartNew();
        var cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;   // CPU time tells the work apart from waiting on a shared machine
        var ml = new MLContext(seed: 1);

        // 1. The base model: trained on Fashion-MNIST as it is (light clothes on black), or loaded from a zip.
        string baseZip = options.BaseModel ?? Path.Combine(outDir, "base-model.zip");
        ITransformer baseModel;
        if (options.BaseModel is not null)
        {
            baseModel = ml.Model.Load(options.BaseModel, out _);
            log.WriteLine($"Loaded the base model {options.BaseModel}.");
        }
        else
        {
            var data = FashionMnist.LoadDataView(ml, FashionMnistSplit.Train, maxItems: options.BaseImages);
            log.WriteLine($"Training an unconditional base model for {options.BaseSteps} steps on {options.BaseImages?.ToString() ?? "all"} Fashion-MNIST images...");
            baseModel = ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions
            {
                ImageColumnName = nameof(FashionMnistRow.Pixels), ImageChannels = 1, PixelRange = PixelRange.Bytes,
                BaseChannels = options.BaseChannels, ChannelMultipliers = options.ChannelMultipliers,
                AttentionResolutions = [ImageSize >> (options.ChannelMultipliers.Length - 1)],
                TrainingSteps = options.BaseSteps, BatchSize = 64, WarmupSteps = Math.Min(50, options.BaseSteps / 4), EmaDecay = 0.99, Seed = 1,
                ReportEvery = Math.Max(1, options.BaseSteps / 6), Progress = Report(log),
            }).Fit(data);
            ml.Model.SaveAtomically(baseModel, data.Schema, baseZip);
            log.WriteLine($"Trained in {clock.Elapsed.TotalSeconds:F0} s; saved {baseZip}");
        }
        double baseSeconds = clock.Elapsed.TotalSeconds;
        var baseCpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu;
        var model = DiffusionTrainingTransformer.FindModel(baseModel);
        if (model.ImageShape is not [1, ImageSize, ImageSize] || model.NetworkOptions.Condition.Kind != Conditioning.ConditionKind.None)
            throw new ArgumentException($"The base model must be unconditional with 1×{ImageSize}×{ImageSize} images, like Fashion-MNIST's; '{baseZip}' has {string.Join("×", model.ImageShape)} ({model.NetworkOptions.Condition.Kind}).", nameof(options));

        // 2. Before: the base model draws the seeds.
        var before = Generate(ml, model, options);
        string beforeGrid = Path.Combine(outDir, "before.png");
        PixelRows.SaveGrid(before, 1, ImageSize, ImageSize, beforeGrid);

        // 3. The LoRA's data: a handful of test images, inverted; also written as PNG files for 'mldiffusion train --images'.
        var inverted = FashionMnist.Load(FashionMnistSplit.Test, maxItems: options.LoraImages)
            .Select(r => new FashionMnistRow { Pixels = [.. r.Pixels.Select(p => 255f - p)], Label = r.Label, ClassName = r.ClassName, Prompt = r.Prompt })
            .ToList();
        string trainingGrid = Path.Combine(outDir, "lora-training-images.png");
        PixelRows.SaveGrid([.. inverted.Select(r => r.Pixels)], 1, ImageSize, ImageSize, trainingGrid);
        string imagesFolder = Path.Combine(outDir, "lora-images");
        SaveImages(inverted, imagesFolder);

        // 4. TrainDiffusion with StartFrom and Lora: the base network is frozen, only the rank-r adapters train.
        log.WriteLine($"Training a rank-{options.LoraRank} LoRA for {options.LoraSteps} steps on {inverted.Count} inverted images ({trainingGrid})...");
        var loraClock = Stopwatch.StartNew();
        var loraData = ml.Data.LoadFromEnumerable(inverted);
        string adapter;
        using (var trained = ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions
        {
            ImageColumnName = nameof(FashionMnistRow.Pixels), ImageChannels = 1, PixelRange = PixelRange.Bytes,
            StartFrom = model,
            Lora = new LoraTrainingOptions { Rank = options.LoraRank, TargetModules = options.LoraTargets },
            TrainingSteps = options.LoraSteps, BatchSize = inverted.Count, LearningRate = options.LoraLearningRate,
            WarmupSteps = Math.Min(10, options.LoraSteps / 4), EmaDecay = 0, Seed = 2,
            ReportEvery = Math.Max(1, options.LoraSteps / 5), Progress = Report(log),
        }).Fit(loraData))
        {
            adapter = trained.Lora!.Save(Path.Combine(outDir, "inverted-lora.safetensors"));
            log.WriteLine($"Saved the LoRA ({trained.Lora.UNetLayers} layers of rank {options.LoraRank}) to {adapter} ({new FileInfo(adapter).Length / 1024.0:F0} KB).");
        }   // disposing the result unfuses the LoRA: the base model is as it was
        double loraSeconds = loraClock.Elapsed.TotalSeconds;
        var loraCpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu - baseCpu;

        // 5. After: the adapter read back from its file and fused into the base model; the same seeds.
        float[][] after;
        using (model.LoadLora(adapter))
            after = Generate(ml, model, options);
        string afterGrid = Path.Combine(outDir, "after.png");
        PixelRows.SaveGrid(after, 1, ImageSize, ImageSize, afterGrid);

        var lookBefore = LookOf(before);
        var lookAfter = LookOf(after);
        var target = LookOf([.. inverted.Select(r => r.Pixels)]);
        log.WriteLine($"Light-background share of {options.Samples} samples (seeds 1000–{1000 + options.Samples - 1}): before {lookBefore.LightBackgroundShare:P0}, after {lookAfter.LightBackgroundShare:P0} (the LoRA's training images: {target.LightBackgroundShare:P0}).");
        log.WriteLine($"Mean brightness: before {lookBefore.MeanBrightness:F3}, after {lookAfter.MeanBrightness:F3} (training images: {target.MeanBrightness:F3}).");
        log.WriteLine($"Grids: {Path.GetFullPath(beforeGrid)}, {Path.GetFullPath(afterGrid)}.");
        log.WriteLine($"Time: base {baseSeconds:F0} s ({baseCpu.TotalSeconds:F0} s of CPU), LoRA {loraSeconds:F0} s ({loraCpu.TotalSeconds:F0} s of CPU), "
            + $"{clock.Elapsed.TotalSeconds:F0} s in all ({(System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds:F0} s of CPU).");
        (baseModel as IDisposable)?.Dispose();   // the fitted or loaded pipeline owns the base model
        return new Result(outDir, baseZip, adapter, beforeGrid, afterGrid, trainingGrid, imagesFolder, lookBefore, lookAfter, target,
            baseSeconds, loraSeconds, clock.Elapsed.TotalSeconds);
    }

    private static Action<TrainingProgress> Report(TextWriter log)
        => p => log.WriteLine($"  step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}, {p.StepsPerSecond:F2} steps/s");

    // DiffusionGenerate over a column of seeds: planar 1×28×28 pixels in [0, 255] per row.
    private static float[][] Generate(MLContext ml, DiffusionModel model, LoraTrainingSampleOptions options)
    {
        var seeds = ml.Data.LoadFromEnumerable(Enumerable.Range(0, options.Samples).Select(i => new SeedRow { Seed = 1000 + i }).ToList());
        var generated = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = nameof(SeedRow.Seed), OutputKind = GeneratedOutputKind.Pixels,
            Generation = { Sampler = SamplerName.DpmSolverPlusPlus, Steps = options.SamplingSteps },
        }).Fit(seeds).Transform(seeds);
        return [.. generated.GetColumn<VBuffer<float>>("Generated").Select(v => v.DenseValues().ToArray())];
    }

    /// <summary>Mean brightness in [0, 1], and the share of images whose four 4×4 corners average above mid-grey.</summary>
    public static Look LookOf(IReadOnlyList<float[]> images)
    {
        const int corner = 4;
        double sum = 0;
        int light = 0;
        foreach (var image in images)
        {
            sum += image.Average() / 255.0;
            double corners = 0;
            foreach (int y0 in new[] { 0, ImageSize - corner })
                foreach (int x0 in new[] { 0, ImageSize - corner })
                    for (int y = y0; y < y0 + corner; y++)
                        for (int x = x0; x < x0 + corner; x++)
                            corners += image[y * ImageSize + x];
            if (corners / (4 * corner * corner) > 127.5) light++;
        }
        return new Look(sum / images.Count, (double)light / images.Count);
    }

    // One PNG per image, so the command line can train the same LoRA: mldiffusion train --from base-model.zip --lora-rank 4 --images lora-images …
    private static void SaveImages(IReadOnlyList<FashionMnistRow> rows, string folder)
    {
        Directory.CreateDirectory(folder);
        for (int i = 0; i < rows.Count; i++)
        {
            using var image = tensor(rows[i].Pixels.Select(p => p / 127.5f - 1f).ToArray(), [1, 1, ImageSize, ImageSize]);
            ImageGrid.SavePng(image, Path.Combine(folder, $"inverted-{i:D2}.png"), columns: 1, scale: 1, padding: 0);
        }
    }

    private sealed class SeedRow
    {
        public int Seed { get; set; }
    }
}
