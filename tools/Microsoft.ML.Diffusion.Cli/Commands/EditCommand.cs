using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// <c>mldiffusion edit</c>: redraws an image with a model, through the DiffusionImageToImage stage (image-to-image at a
/// strength) or, given a mask, the DiffusionInpaint stage; writes the input, the mask and the edits as a PNG grid.
/// </summary>
internal sealed class EditCommand
{
    private readonly Option<string?> _model = new("--model") { Description = "The model zip written by 'mldiffusion train' or 'import'." };
    private readonly Option<string?> _diffusers = new("--diffusers") { Description = "A Hugging Face diffusers model folder to edit with instead of a zip." };
    private readonly Option<string> _image = new("--image") { Description = "The image to edit (PNG or JPEG); it is resized to the model's size.", Required = true };
    private readonly Option<string?> _mask = new("--mask") { Description = "Inpaint instead: a mask image of the same picture, white where to redraw, black where to keep." };
    private readonly Option<double?> _strength = new("--strength") { Description = "Image-to-image: how much to redraw, 0 (keep) to 1 (new image) (default 0.6)." };
    private readonly Option<int> _count = new("--count") { Description = "Edits to make, seeds --seed, --seed + 1, …", DefaultValueFactory = _ => 4 };
    private readonly Option<long> _seed = new("--seed") { Description = "Seed of the first edit.", DefaultValueFactory = _ => 0 };
    private readonly Option<string?> _sampler = new Option<string?>("--sampler") { Description = "Image-to-image sampler: ddpm, ddim, dpm-solver++, euler-ancestral, heun, or another registered name (default: dpm-solver++)." }
        .AcceptOnlyFromAmong(Names.Samplers);
    private readonly Option<int?> _steps = new("--steps") { Description = "Steps of the whole trajectory (image-to-image runs strength × steps of them; inpainting default 250)." };
    private readonly Option<double> _eta = new("--eta") { Description = "DDIM's and RePaint's η: 0 is deterministic.", DefaultValueFactory = _ => 0.0 };
    private readonly Option<int> _jumpLength = new("--jump-length") { Description = "Inpainting: steps RePaint goes back up at each jump.", DefaultValueFactory = _ => 10 };
    private readonly Option<int> _resamplings = new("--resamplings") { Description = "Inpainting: times RePaint samples each stretch (1 never jumps back).", DefaultValueFactory = _ => 10 };
    private readonly Option<string> _out = new("--out") { Description = "The PNG grid to write: the input, the mask (inpainting), then the edits.", Required = true };
    private readonly Option<int> _columns = new("--columns") { Description = "Images per grid row.", DefaultValueFactory = _ => 8 };
    private readonly Option<int> _scale = new("--scale") { Description = "Pixel magnification in the grid.", DefaultValueFactory = _ => 4 };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new EditCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("edit", "Redraw an image with a model: image-to-image at a strength, or inpainting where a mask is white.")
        {
            _model, _diffusers, _image, _mask, _strength, _count, _seed, _sampler, _steps, _eta, _jumpLength, _resamplings, _out, _columns, _scale,
        };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private sealed class EditRow
    {
        public string ImagePath { get; set; } = "";
        public string MaskPath { get; set; } = "";
        public long Seed { get; set; }
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        var inv = CultureInfo.InvariantCulture;
        string? zip = parse.GetValue(_model), diffusers = parse.GetValue(_diffusers);
        if ((zip is null) == (diffusers is null)) throw new UsageException(zip is null ? "Give the model: --model <zip> or --diffusers <folder>." : "Give only one of --model and --diffusers.");
        string image = ExistingFile(parse.GetValue(_image)!, "Image");
        string? mask = parse.GetValue(_mask) is { } m ? ExistingFile(m, "Mask") : null;
        double? strength = parse.GetValue(_strength);
        if (mask is not null && strength is not null) throw new UsageException("--strength is for image-to-image; with --mask the masked region is redrawn completely. Give one of them.");
        if (strength is { } s && !(s >= 0 && s <= 1)) throw new UsageException($"--strength must lie between 0 and 1, not {s.ToString(inv)}.");
        int count = parse.GetValue(_count);
        if (count is < 1 or > 10_000) throw new UsageException($"--count must be between 1 and 10000, not {count}.");
        SamplerName? sampler = parse.GetValue(_sampler) is { } name ? Names.Sampler(name) : (SamplerName?)null;
        if (mask is not null && sampler is not null) throw new UsageException("--sampler is for image-to-image; inpainting walks RePaint's own steps (--steps, --jump-length, --resamplings).");
        int? steps = parse.GetValue(_steps);
        if (steps is < 1) throw new UsageException($"--steps must be positive, not {steps}.");
        double eta = parse.GetValue(_eta);
        if (!(eta >= 0 && eta <= 1)) throw new UsageException($"--eta must lie between 0 and 1, not {eta.ToString(inv)}.");
        int jump = parse.GetValue(_jumpLength), resamplings = parse.GetValue(_resamplings);
        if (jump < 1) throw new UsageException($"--jump-length must be positive, not {jump}.");
        if (resamplings < 1) throw new UsageException($"--resamplings must be at least 1, not {resamplings}.");
        int columns = parse.GetValue(_columns), scale = parse.GetValue(_scale);
        if (columns < 1) throw new UsageException($"--columns must be positive, not {columns}.");
        if (scale is < 1 or > 32) throw new UsageException($"--scale must be between 1 and 32, not {scale}.");
        string outPath = parse.GetValue(_out)!;
        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath)) throw new UsageException($"--out must name a PNG file, not '{outPath}'.");
        long seed = parse.GetValue(_seed);

        var ml = new MLContext(seed: 0);
        using var cancelRegistration = ctx.Cancellation.Register(() => ml.CancelExecution());
        using var loaded = zip is not null ? LoadedModel.Load(ml, zip) : LoadedModel.FromDiffusers(ml, diffusers!);
        var shape = loaded.Model.ImageShape;
        int channels = (int)shape[0], size = (int)shape[1];
        ctx.Line($"Model '{loaded.Path}': {channels}×{size}×{size} images; '{Path.GetFileName(image)}' is resized to {size}×{size}.");

        var rows = ml.Data.LoadFromEnumerable(Enumerable.Range(0, count)
            .Select(i => new EditRow { ImagePath = Path.GetFullPath(image), MaskPath = mask is null ? "" : Path.GetFullPath(mask), Seed = seed + i }).ToList());
        IEstimator<ITransformer> pipeline = ml.Transforms.LoadImages("Image", null, nameof(EditRow.ImagePath))
            .Append(ml.Transforms.ResizeImages("Image", size, size));
        if (mask is not null)
            pipeline = pipeline.Append(ml.Transforms.LoadImages("Mask", null, nameof(EditRow.MaskPath)))
                .Append(ml.Transforms.ResizeImages("Mask", size, size))
                .Append(ml.Transforms.ConvertToGrayscale("MaskGrey", "Mask"))
                .Append(ml.Transforms.ExtractPixels("MaskPixels", "MaskGrey", ImagePixelExtractingEstimator.ColorBits.Red));
        pipeline = channels == 1
            ? pipeline.Append(ml.Transforms.ConvertToGrayscale("Grey", "Image")).Append(ml.Transforms.ExtractPixels("InputPixels", "Grey", ImagePixelExtractingEstimator.ColorBits.Red))
            : pipeline.Append(ml.Transforms.ExtractPixels("InputPixels", "Image", ImagePixelExtractingEstimator.ColorBits.Rgb));

        string title;
        if (mask is null)
        {
            var options = new DiffusionImageToImageOptions
            {
                OutputColumnName = "Edited", ImageColumnName = "Image", SeedColumnName = nameof(EditRow.Seed), Strength = strength ?? 0.6,
                OutputKind = GeneratedOutputKind.Pixels, BatchSize = 16, Generation = loaded.Sampling(sampler, steps, eta),
            };
            pipeline = pipeline.Append(ml.Transforms.DiffusionImageToImage(loaded.Transformer, options));
            var chosen = options.Generation.Sampler;
            int total = steps ?? DiffusionSamplers.DefaultSteps(chosen, loaded.Model.Schedule);
            title = string.Create(inv, $"Editing {count} times at strength {options.Strength} ({Names.Of(chosen)}, {(int)Math.Floor(total * options.Strength)} of {total} steps)");
        }
        else
        {
            var options = new DiffusionInpaintingOptions
            {
                OutputColumnName = "Edited", ImageColumnName = "Image", MaskColumnName = "Mask", SeedColumnName = nameof(EditRow.Seed),
                Inpainting = { Steps = steps ?? new InpaintingOptions().Steps, Eta = eta, JumpLength = jump, Resamplings = resamplings },
                OutputKind = GeneratedOutputKind.Pixels, BatchSize = 16,
            };
            pipeline = pipeline.Append(ml.Transforms.DiffusionInpaint(loaded.Transformer, options));
            title = $"Inpainting {count} times (RePaint, {steps ?? 250} steps, jumps of {jump}, {resamplings} samples each)";
        }

        float[][] edits, input;
        float[]? maskPixels = null;
        try
        {
            var view = pipeline.Fit(rows).Transform(rows);
            input = view.GetColumn<float[]>("InputPixels").Take(1).ToArray();
            if (mask is not null) maskPixels = view.GetColumn<float[]>("MaskPixels").First();
            edits = LoadedModel.ReadWithProgress(ctx, view, "Edited", count, title);
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            ctx.Line("Editing stopped; no grid was written.");
            return ExitCodes.Cancelled;
        }

        var cells = new List<float[]> { input[0] };
        if (maskPixels is not null) cells.Add(Enumerable.Range(0, channels).SelectMany(_ => maskPixels).ToArray());   // the mask, grey in every channel
        cells.AddRange(edits);
        PixelRows.SaveGrid(cells, channels, size, size, outPath, columns, scale);
        ctx.Line($"Wrote the input{(mask is null ? "" : ", the mask")} and {count} edits (seeds {seed}–{seed + count - 1}) to '{outPath}'.");
        return ExitCodes.Success;
    }

    private static string ExistingFile(string path, string what)
    {
        if (Directory.Exists(path)) throw new UsageException($"{what} '{path}' is a folder; give an image file.");
        if (!File.Exists(path)) throw new UsageException($"{what} file '{path}' does not exist.");
        return path;
    }
}
