using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Transforms.Image;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The sample's steps, callable from tests with a small step count.</summary>
public static class PipelineCompositionSample
{
    public const int DefaultSteps = 600;   // about 75 s on 2 CPU cores
    private const int SourceSize = 20;   // the PNG files; the pipeline resizes them
    private const int Size = 16;         // what the model sees
    private const int Samples = 16;

    /// <summary>What the sample wrote.</summary>
    public sealed record Result(
        string OutputFolder, string ModelZip, string GenerationZip,
        string TrainingGrid, string ColourGrid, string GreyGrid,
        int FeatureLength, long TrainedSteps);

    public static Result Run(string outDir, int steps, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        var clock = Stopwatch.StartNew();

        // 1. Training images: discs in orange, squares in teal, on navy, as PNG files.
        string imageFolder = Path.Combine(outDir, "images");
        string[] files = WriteShapeImages(imageFolder, count: 256);
        log.WriteLine($"Wrote {files.Length} training images ({SourceSize}×{SourceSize} PNG) to {imageFolder}");

        // 2. Train: ML.NET loads and resizes the images, TrainDiffusion fits the model.
        var ml = new MLContext(seed: 1);
        var paths = ml.Data.LoadFromEnumerable(files.Select(f => new ImagePath { Path = f }).ToList());
        var training = ml.Transforms.LoadImages("Image", imageFolder, nameof(ImagePath.Path))
            .Append(ml.Transforms.ResizeImages("Image", Size, Size))
            .Append(ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions
            {
                ImageColumnName = "Image",
                ImageChannels = 3,
                BaseChannels = 16,
                ChannelMultipliers = [1, 2],
                TrainingSteps = steps,
                BatchSize = 32,
                LearningRate = 2e-3,
                WarmupSteps = Math.Min(50, steps / 4),
                EmaDecay = 0.99,
                Seed = 1,
                ReportEvery = Math.Max(1, steps / 6),
                Progress = p => log.WriteLine($"  step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}, {p.StepsPerSecond:F1} steps/s"),
            }));
        var trained = training.Fit(paths);
        string modelZip = Path.Combine(outDir, "shapes-model.zip");
        ml.Model.SaveAtomically(trained, paths.Schema, modelZip);
        log.WriteLine($"Trained {steps} steps in {clock.Elapsed.TotalSeconds:F0} s; saved {modelZip}");

        // 3. A fresh context loads the zip and composes generation with ML.NET's image stages.
        var app = new MLContext(seed: 2);
        var loaded = app.Model.Load(modelZip, out _);
        var seeds = app.Data.LoadFromEnumerable(Enumerable.Range(0, Samples).Select(i => new SeedRow { Seed = 100 + i }).ToList());
        var generation = app.Transforms.DiffusionGenerate(loaded, "Generated", seedColumnName: nameof(SeedRow.Seed),
                sampler: SamplerName.DpmSolverPlusPlus, steps: 20)
            .Append(app.Transforms.ConvertToGrayscale("Grey", "Generated"))
            .Append(app.Transforms.ExtractPixels("ColourPixels", "Generated"))                                             // 3×16×16, 0–255
            .Append(app.Transforms.ExtractPixels("GreyPixels", "Grey", ImagePixelExtractingEstimator.ColorBits.Red))     // 1×16×16
            .Append(app.Transforms.Concatenate("Features", "ColourPixels", "GreyPixels"))                                // e.g. for a downstream model
            .Append(app.Transforms.CopyColumns("Picture", "Generated"))
            .Fit(seeds);

        // 4. The whole generation chain is one zip too; load it back and run it.
        string generationZip = Path.Combine(outDir, "generate-chain.zip");
        app.Model.SaveAtomically(generation, seeds.Schema, generationZip);
        var reloaded = new MLContext().Model.Load(generationZip, out _);
        var output = reloaded.Transform(seeds);
        // One pass over all three columns: every new cursor over 'output' would run the sampler again.
        var columns = Columns(output, "ColourPixels", "GreyPixels", "Features");
        float[][] colour = columns[0], grey = columns[1], features = columns[2];
        var pictureType = (ImageDataViewType)output.Schema["Picture"].Type;
        log.WriteLine($"Generation chain ({generationZip}) reloaded: {Samples} rows; 'Picture' is a {pictureType.Width}×{pictureType.Height} image column, 'Features' has {features[0].Length} values per row");

        string trainingGrid = Path.Combine(outDir, "training-images.png");
        string colourGrid = Path.Combine(outDir, "generated-colour.png");
        string greyGrid = Path.Combine(outDir, "generated-grey.png");
        var preview = ml.Transforms.LoadImages("Image", imageFolder, nameof(ImagePath.Path))
            .Append(ml.Transforms.ResizeImages("Image", Size, Size))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image"));                                                     // what the model was trained on
        PixelRows.SaveGrid(Column(preview.Fit(paths).Transform(paths), "Pixels").Take(Samples).ToArray(), 3, Size, Size, trainingGrid, columns: 8, scale: 4);
        PixelRows.SaveGrid(colour, 3, Size, Size, colourGrid, columns: 8, scale: 4);
        PixelRows.SaveGrid(grey, 1, Size, Size, greyGrid, columns: 8, scale: 4);
        log.WriteLine($"Grids: {trainingGrid}, {colourGrid}, {greyGrid} ({clock.Elapsed.TotalSeconds:F0} s in all)");

        return new Result(outDir, modelZip, generationZip, trainingGrid, colourGrid, greyGrid, features[0].Length,
            DiffusionTrainingTransformer.FindModel(loaded).TrainingSteps);
    }

    private static float[][] Column(IDataView view, string column) => Columns(view, column)[0];

    private static float[][][] Columns(IDataView view, params string[] names)
    {
        var columns = names.Select(n => view.Schema[n]).ToArray();
        var rows = names.Select(_ => new List<float[]>()).ToArray();
        using var cursor = view.GetRowCursor(columns);
        var getters = columns.Select(c => cursor.GetGetter<VBuffer<float>>(c)).ToArray();
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
            for (int i = 0; i < getters.Length; i++)
            {
                getters[i](ref buffer);
                rows[i].Add(buffer.DenseValues().ToArray());
            }
        return rows.Select(r => r.ToArray()).ToArray();
    }

    private static string[] WriteShapeImages(string folder, int count)
    {
        Directory.CreateDirectory(folder);
        var shapes = SyntheticShapes.GeneratePixels(count, SourceSize, seed: 0);
        var files = new string[count];
        for (int i = 0; i < count; i++)
        {
            // A square fills its bounding box; a disc fills about π/4 of it.
            var inside = Enumerable.Range(0, SourceSize * SourceSize).Where(p => shapes[i][p] > 0.5f).ToArray();
            int x0 = inside.Min(p => p % SourceSize), x1 = inside.Max(p => p % SourceSize);
            int y0 = inside.Min(p => p / SourceSize), y1 = inside.Max(p => p / SourceSize);
            bool square = inside.Length > 0.9 * (x1 - x0 + 1) * (y1 - y0 + 1);
            (byte r, byte g, byte b) fill = square ? ((byte)40, (byte)200, (byte)180) : ((byte)250, (byte)150, (byte)30);
            var rgba = new byte[SourceSize * SourceSize * 4];
            for (int p = 0; p < SourceSize * SourceSize; p++)
            {
                var (r, g, b) = shapes[i][p] > 0.5f ? fill : ((byte)20, (byte)24, (byte)60);
                rgba[p * 4] = r; rgba[p * 4 + 1] = g; rgba[p * 4 + 2] = b; rgba[p * 4 + 3] = 255;
            }
            files[i] = $"shape{i:D3}.png";
            using var image = MLImage.CreateFromPixels(SourceSize, SourceSize, MLPixelFormat.Rgba32, rgba);
            image.Save(Path.Combine(folder, files[i]));
        }
        return files;
    }

    private sealed class ImagePath
    {
        public string Path { get; set; } = "";
    }

    private sealed class SeedRow
    {
        public int Seed { get; set; }
    }
}
