using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Cli.Data;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Transforms.Image;
using Spectre.Console;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// <c>mldiffusion evaluate</c>: simple, honest numbers for generated images against a real image set —
/// the mean RMS distance from each image to its nearest real image (<see cref="NearestNeighbourDistance"/>,
/// the measure the library's trainer tests use), for generated images, clipped Gaussian noise and real
/// images themselves (leave-one-out), plus pixel mean and standard deviation. They say whether samples look like the data, not how
/// diverse they are: a model that memorised a few training images would also score well.
/// </summary>
internal sealed class EvaluateCommand
{
    private readonly Option<string> _model = new("--model") { Description = "The model zip written by 'mldiffusion train'.", Required = true };
    private readonly Option<string?> _images = new("--images") { Description = "Folder of real .png/.jpg images." };
    private readonly Option<string?> _idx = new("--idx") { Description = "IDX file of real images (optionally gzip-compressed)." };
    private readonly Option<bool> _shapes = new("--shapes") { Description = "Compare with the built-in synthetic shapes." };
    private readonly Option<int> _count = new("--count") { Description = "Images to generate.", DefaultValueFactory = _ => 64 };
    private readonly Option<long> _seed = new("--seed") { Description = "Seed of the first generated image.", DefaultValueFactory = _ => 1000 };
    private readonly Option<string> _sampler = new Option<string>("--sampler") { Description = "ddpm, ddim, dpm-solver++, euler-ancestral, heun, or another registered name.", DefaultValueFactory = _ => "dpm-solver++" }
        .AcceptOnlyFromAmong(Names.Samplers);
    private readonly Option<int?> _steps = new("--steps") { Description = "Denoising steps (default: the sampler's usual count)." };
    private readonly Option<int> _batch = new("--batch") { Description = "Images per sampler run.", DefaultValueFactory = _ => 16 };
    private readonly Option<int> _maxImages = new("--max-images") { Description = "Use at most this many real images.", DefaultValueFactory = _ => 5000 };
    private readonly Option<int> _shapeCount = new("--shape-count") { Description = "Built-in shape images to compare with.", DefaultValueFactory = _ => ImageSources.DefaultShapeCount };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new EvaluateCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("evaluate", "Generate images and compare them with a real image set (nearest-neighbour RMS distance, pixel statistics).")
        {
            _model, _images, _idx, _shapes, _count, _seed, _sampler, _steps, _batch, _maxImages, _shapeCount,
        };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        string? folder = parse.GetValue(_images), idx = parse.GetValue(_idx);
        bool shapes = parse.GetValue(_shapes);
        int given = (folder is null ? 0 : 1) + (idx is null ? 0 : 1) + (shapes ? 1 : 0);
        if (given != 1) throw new UsageException(given == 0 ? "Give the real images to compare with: --images <folder>, --idx <file> or --shapes." : "Give only one of --images, --idx and --shapes.");
        int count = parse.GetValue(_count);
        if (count is < 2 or > 100_000) throw new UsageException($"--count must be between 2 and 100000, not {count}.");
        int? steps = parse.GetValue(_steps);
        if (steps is < 1) throw new UsageException($"--steps must be positive, not {steps}.");
        int batch = parse.GetValue(_batch);
        if (batch < 1) throw new UsageException($"--batch must be positive, not {batch}.");
        int maxImages = parse.GetValue(_maxImages);
        if (maxImages < 2) throw new UsageException($"--max-images must be at least 2, not {maxImages}.");
        int shapeCount = parse.GetValue(_shapeCount);
        if (shapeCount < 2) throw new UsageException($"--shape-count must be at least 2, not {shapeCount}.");
        var sampler = Names.Sampler(parse.GetValue(_sampler)!);
        string[] files = folder is not null ? ImageSources.ListImageFiles(folder, maxImages) : [];
        if (idx is not null && !File.Exists(idx)) throw new UsageException($"IDX file '{idx}' does not exist.");

        var ml = new MLContext(seed: 0);
        using var cancelRegistration = ctx.Cancellation.Register(() => ml.CancelExecution());
        using var loaded = LoadedModel.Load(ml, parse.GetValue(_model)!);
        int channels = (int)loaded.Model.ImageShape[0], size = (int)loaded.Model.ImageShape[1];
        if (channels != 1 && folder is null)
            throw new UsageException($"The model generates {channels}-channel images but {(shapes ? "the built-in shapes" : "IDX images")} are grey; compare it with --images.");

        // Real images as planar pixels in [0, 255], at the model's size and channel count.
        float[][] real;
        string realName;
        if (folder is not null)
        {
            ImageSources.CheckReadable(folder, files);
            var paths = ml.Data.LoadFromEnumerable(files.Select(f => new ImageFileRow { Path = f }).ToList());
            IEstimator<ITransformer> read = ml.Transforms.LoadImages("Image", folder, nameof(ImageFileRow.Path))
                .Append(ml.Transforms.ResizeImages("Image", size, size));
            read = channels == 1
                ? read.Append(ml.Transforms.ConvertToGrayscale("Image")).Append(ml.Transforms.ExtractPixels("Pixels", "Image", ImagePixelExtractingEstimator.ColorBits.Red))
                : read.Append(ml.Transforms.ExtractPixels("Pixels", "Image", ImagePixelExtractingEstimator.ColorBits.Rgb));
            var view = read.Fit(paths).Transform(paths);
            real = view.GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()).ToArray();
            realName = $"{real.Length} images from '{folder}'";
        }
        else if (idx is not null)
        {
            real = ImageSources.Idx(idx, size, maxImages);
            realName = $"{real.Length} images from IDX file '{idx}'";
        }
        else
        {
            real = ImageSources.Shapes(Math.Min(shapeCount, maxImages), size).Select(p => p.Select(v => v * 255f).ToArray()).ToArray();
            realName = $"{real.Length} built-in shape images";
        }
        if (real.Length < 2) throw new CliRuntimeException($"The real set has {real.Length} image; at least 2 are needed.");
        ctx.Line($"Model '{loaded.Path}' ({channels}×{size}×{size}, {loaded.Model.TrainingSteps} training steps) against {realName}.");

        float[][] generated;
        try
        {
            generated = loaded.Generate(ml, ctx, count, parse.GetValue(_seed), sampler, steps, 0, batch);
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            ctx.Line($"Evaluation stopped.");
            return ExitCodes.Cancelled;
        }

        var report = Measure(generated, real, seed: parse.GetValue(_seed));
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("Image set").AddColumn(new TableColumn("Images").RightAligned())
            .AddColumn(new TableColumn("NN RMS to real set").RightAligned())
            .AddColumn(new TableColumn("Pixel mean").RightAligned()).AddColumn(new TableColumn("Pixel std").RightAligned());
        foreach (var row in report.Rows)
            table.AddRow(Markup.Escape(row.Name), row.Count.ToString(CultureInfo.InvariantCulture), F(row.NearestRms), F(row.Mean), F(row.Std));
        ctx.Console.Write(table);
        ctx.Line("All values in pixel units of [0, 1]. NN RMS: mean over images of the RMS pixel distance to the nearest real image (lower = closer to the data).");
        ctx.Line($"Generated / noise distance ratio: {report.Ratio:F3} (1 = no better than noise; the library's trainer test asks for < 0.5 on the built-in shapes).");
        return ExitCodes.Success;
    }

    private static string F(double v) => double.IsNaN(v) ? "–" : v.ToString("F4", CultureInfo.InvariantCulture);

    internal sealed record Row(string Name, int Count, double NearestRms, double Mean, double Std);

    internal sealed record Report(IReadOnlyList<Row> Rows, double Ratio);

    /// <summary>The numbers of the table; images are planar pixel rows in [0, 255].</summary>
    internal static Report Measure(float[][] generated, float[][] real, long seed)
    {
        using var scope = NewDisposeScope();
        // Flat rows suffice: the distances and statistics do not depend on the image shape.
        var gen = PixelRows.ToTensor(generated, 1, 1, generated[0].Length);
        var data = PixelRows.ToTensor(real, 1, 1, real[0].Length);
        var noise = randn(gen.shape, generator: new Generator(unchecked((ulong)seed))).clamp(-1, 1);
        int held = Math.Min(generated.Length, real.Length);

        double genRms = UnitRms(gen, data, excludeSelf: false);
        double noiseRms = UnitRms(noise, data, excludeSelf: false);
        double realRms = UnitRms(data[..held], data, excludeSelf: true);
        Row Stats(string name, Tensor x, double rms)
        {
            var unit = (x + 1) / 2;
            return new Row(name, (int)x.shape[0], rms, unit.mean().item<float>(), unit.std().item<float>());
        }
        return new Report(
        [
            Stats("generated", gen, genRms),
            Stats("real (each vs the rest)", data[..held], realRms),
            Stats("clipped Gaussian noise", noise, noiseRms),
        ], genRms / noiseRms);
    }

    // Distances of [−1, 1] images, reported in [0, 1] pixel units.
    private static double UnitRms(Tensor images, Tensor data, bool excludeSelf)
        => NearestNeighbourDistance.MeanRms(images, data, excludeSelf) / 2;
}
