using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Imaging;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>Settings of <see cref="FashionMnistEditingSample"/>; the defaults train the model the guide's grids come from.</summary>
public sealed record FashionMnistEditingOptions
{
    public string? Model { get; init; }                 // a class-conditional model zip or .mldiff file; null trains one
    public int Steps { get; init; } = 1500;             // training steps when no model is given (about 17 minutes on 2 cores)
    public int? MaxTrainingImages { get; init; }
    public int BaseChannels { get; init; } = 32;
    public int[] ChannelMultipliers { get; init; } = [1, 2, 2];
    public double[] Strengths { get; init; } = [0, 0.25, 0.5, 0.75, 1];
    public int Images { get; init; } = 6;               // shirts to edit, garments to inpaint
    public int InpaintingSteps { get; init; } = 250;
    public int TimedImages { get; init; } = 32;         // images of the edit-against-generate timing (0 skips it)
}

/// <summary>
/// Editing Fashion-MNIST garments with a class-conditional model, through ML.NET stages: shirts redrawn as bags at several
/// strengths (DiffusionImageToImage with the target class as the condition), the lower half of garments inpainted
/// (DiffusionInpaint, conditioned on their own class), and strips between two classes and two seeds.
/// </summary>
public static class FashionMnistEditingSample
{
    public const int Shirt = 6, Bag = 8;

    public sealed record Result(string ShirtToBagGrid, string InpaintingGrid, string InterpolationGrid,
        double? GenerateSecondsPerImage, double? EditSecondsPerImage);

    private sealed class EditRow
    {
        [VectorType(1, FashionMnist.ImageSize, FashionMnist.ImageSize)]
        public float[] Pixels { get; set; } = [];

        [VectorType(FashionMnist.ImageSize * FashionMnist.ImageSize)]
        public float[] Mask { get; set; } = [];

        public int Target { get; set; }
        public int Seed { get; set; }
    }

    public static Result Run(string outDir, FashionMnistEditingOptions options, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        if (!FashionMnist.IsAvailable(out string reason)) throw new FileNotFoundException(reason);
        var ml = new MLContext(seed: 1);
        using var model = LoadOrTrain(ml, options, outDir, log);
        if (model.NetworkOptions.Condition.Kind != ConditionKind.Class || model.NetworkOptions.Condition.ClassCount != FashionMnist.ClassCount)
            throw new ArgumentException($"The model must be class-conditional on Fashion-MNIST's {FashionMnist.ClassCount} classes.");
        var test = FashionMnist.Load(FashionMnistSplit.Test);
        const int size = FashionMnist.ImageSize;

        // 1. Shirts to bags: each shirt is noised to the strength's step and sampled back as a bag. One row per shirt,
        //    one column per strength (strength 0 is the shirt itself, 1 a bag drawn from the seed's noise alone).
        var shirts = test.Where(r => r.Label == Shirt).Take(options.Images).ToArray();
        var columns = new List<float[][]>();
        foreach (double strength in options.Strengths)
        {
            var rows = ml.Data.LoadFromEnumerable(shirts.Select((r, i) => new EditRow { Pixels = r.Pixels, Mask = new float[size * size], Target = Bag, Seed = 100 + i }).ToList());
            var edit = ml.Transforms.DiffusionImageToImage(model, new DiffusionImageToImageOptions
            {
                ImageColumnName = nameof(EditRow.Pixels), ConditionColumnName = nameof(EditRow.Target), SeedColumnName = nameof(EditRow.Seed),
                Strength = strength, Generation = { GuidanceScale = 3, Sampler = SamplerName.DpmSolverPlusPlus, Steps = 20 }, OutputKind = GeneratedOutputKind.Pixels,
            });
            columns.Add(Pixels(edit.Fit(rows).Transform(rows), "EditedImage"));
            log.WriteLine($"Shirts → bags at strength {strength}");
        }
        string shirtToBag = Path.Combine(outDir, "edit-shirt-to-bag.png");
        SaveGrid(Enumerable.Range(0, shirts.Length).SelectMany(i => columns.Select(c => c[i])).ToList(), shirtToBag, options.Strengths.Length);

        // 2. Inpainting: the lower half of one garment of each of several classes is redrawn to fit the upper half.
        var garments = Enumerable.Range(0, options.Images).Select(i => test.First(r => r.Label == new[] { 0, 2, 3, 5, 7, 9 }[i % 6])).ToArray();
        var lowerHalf = Enumerable.Range(0, size * size).Select(p => p / size >= size / 2 ? 1f : 0f).ToArray();
        var damaged = ml.Data.LoadFromEnumerable(garments.Select((r, i) => new EditRow { Pixels = r.Pixels, Mask = lowerHalf, Target = r.Label, Seed = 200 + i }).ToList());
        var inpaint = ml.Transforms.DiffusionInpaint(model, new DiffusionInpaintingOptions
        {
            ImageColumnName = nameof(EditRow.Pixels), MaskColumnName = nameof(EditRow.Mask), ConditionColumnName = nameof(EditRow.Target),
            SeedColumnName = nameof(EditRow.Seed), Inpainting = { Steps = options.InpaintingSteps, GuidanceScale = 3 }, OutputKind = GeneratedOutputKind.Pixels,
        });
        var filled = Pixels(inpaint.Fit(damaged).Transform(damaged), "InpaintedImage");
        var masked = garments.Select(r => r.Pixels.Select((v, p) => lowerHalf[p] > 0 ? 127.5f : v).ToArray()).ToArray();
        string inpainting = Path.Combine(outDir, "inpaint-lower-half.png");
        SaveGrid(Enumerable.Range(0, garments.Length).SelectMany(i => new[] { garments[i].Pixels, masked[i], filled[i] }).ToList(), inpainting, 3);
        log.WriteLine($"Inpainted the lower halves of {garments.Length} garments ({options.InpaintingSteps} RePaint steps)");

        // 3. Strips: from a shirt to a bag for one seed (the two guided predictions blended), and between two seeds' bags.
        var generation = new GenerationOptions { Sampler = SamplerName.DpmSolverPlusPlus, Steps = 20, GuidanceScale = 3 };
        using var shirtClass = ConditionBatch.Classes(tensor(new long[] { Shirt }));
        using var bagClass = ConditionBatch.Classes(tensor(new long[] { Bag }));
        using var byClass = model.InterpolateConditions(generation, seed: 5, shirtClass, bagClass, count: 8);
        using var bags = ConditionBatch.Classes(full(8, (long)Bag, dtype: ScalarType.Int64));
        using var bySeed = model.Interpolate(generation, seedA: 5, seedB: 6, count: 8, condition: bags);
        string interpolation = Path.Combine(outDir, "interpolate.png");
        using (var both = cat([byClass, bySeed], 0)) ImageGrid.SavePng(both, interpolation, columns: 8, scale: 2);
        log.WriteLine("Interpolated shirt → bag (seed 5) and between seeds 5 and 6 (bags)");

        // 4. The cost of an edit at strength 0.5 against a generation, same sampler and steps (20 steps: 10 of them run).
        double? generateSeconds = null, editSeconds = null;
        if (options.TimedImages > 0)
        {
            var seeds = Enumerable.Range(0, options.TimedImages).Select(i => (long)i).ToArray();
            using var classes = ConditionBatch.Classes(full(seeds.Length, (long)Bag, dtype: ScalarType.Int64));
            using var inputs = PixelRows.ToTensor(Enumerable.Range(0, seeds.Length).Select(i => shirts[i % shirts.Length].Pixels).ToList(), 1, size, size);
            using (model.Generate(generation, seeds[..1], condition: ConditionBatch.Classes(tensor(new long[] { Bag })))) { }   // warm-up
            var clock = Stopwatch.StartNew();
            using (model.Generate(generation, seeds, condition: classes)) generateSeconds = clock.Elapsed.TotalSeconds / seeds.Length;
            clock.Restart();
            using (model.ImageToImage(generation, inputs, 0.5, seeds, condition: classes)) editSeconds = clock.Elapsed.TotalSeconds / seeds.Length;
            log.WriteLine($"Per image (batch {seeds.Length}, DPM-Solver++ 20 steps, guidance 3): generate {generateSeconds * 1000:F1} ms, edit at strength 0.5 {editSeconds * 1000:F1} ms ({editSeconds / generateSeconds:F2}×)");
        }
        log.WriteLine($"Grids: {shirtToBag}, {inpainting}, {interpolation}");
        return new Result(shirtToBag, inpainting, interpolation, generateSeconds, editSeconds);
    }

    private static DiffusionModel LoadOrTrain(MLContext ml, FashionMnistEditingOptions options, string outDir, TextWriter log)
    {
        if (options.Model is { } path)
        {
            log.WriteLine($"Using the model in {path}");
            return path.EndsWith(".zip", StringComparison.OrdinalIgnoreCase)
                ? DiffusionModel.Load(SaveModelFile(ml, path, outDir))
                : DiffusionModel.Load(path);
        }
        var data = FashionMnist.LoadDataView(ml, FashionMnistSplit.Train, maxItems: options.MaxTrainingImages);
        var training = new DiffusionTrainingOptions
        {
            ImageColumnName = nameof(FashionMnistRow.Pixels), ImageChannels = 1, PixelRange = PixelRange.Bytes,
            ConditionColumnName = nameof(FashionMnistRow.Label), ClassCount = FashionMnist.ClassCount,
            BaseChannels = options.BaseChannels, ChannelMultipliers = options.ChannelMultipliers,
            AttentionResolutions = [FashionMnist.ImageSize >> (options.ChannelMultipliers.Length - 1)],
            TrainingSteps = options.Steps, BatchSize = 64, LearningRate = 5e-4, WarmupSteps = Math.Min(200, options.Steps / 4),
            EmaDecay = options.Steps >= 1000 ? 0.998 : 0.99, ConditionDropout = 0.1, Seed = 1,
            ReportEvery = Math.Max(1, Math.Min(100, options.Steps / 10)),
            Progress = p => log.WriteLine($"  step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}, {p.StepsPerSecond:F2} steps/s"),
        };
        log.WriteLine($"Training a class-conditional model for {options.Steps} steps on Fashion-MNIST...");
        var trained = ml.Transforms.TrainDiffusion(training).Fit(data);
        string zip = Path.Combine(outDir, "fashion-class.zip");
        ml.Model.SaveAtomically(trained, data.Schema, zip);
        return DiffusionModel.Load(SaveModelFile(ml, zip, outDir));
    }

    // The zip's diffusion model as a model file of its own, so the sample owns a model it can dispose.
    private static string SaveModelFile(MLContext ml, string zip, string outDir)
    {
        var loaded = ml.Model.Load(zip, out _);
        string file = Path.Combine(outDir, "fashion-class.mldiff");
        DiffusionTrainingTransformer.FindModel(loaded).Save(file);
        (loaded as IDisposable)?.Dispose();
        return file;
    }

    private static float[][] Pixels(IDataView view, string column)
        => view.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    private static void SaveGrid(IReadOnlyList<float[]> rows, string path, int columns)
        => PixelRows.SaveGrid(rows, 1, FashionMnist.ImageSize, FashionMnist.ImageSize, path, columns, scale: 2);
}
