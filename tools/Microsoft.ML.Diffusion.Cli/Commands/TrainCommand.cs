using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Cli.Data;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// <c>mldiffusion train</c>: trains through the ML.NET pipeline (LoadImages + ResizeImages +
/// TrainDiffusion for image folders; float-pixel rows + TrainDiffusion for IDX files and the built-in
/// shapes), saves the model zip, the training state and a loss plot.
/// </summary>
internal sealed class TrainCommand
{
    private readonly Option<string?> Images = new("--images") { Description = "Folder of .png/.jpg training images (searched recursively)." };
    private readonly Option<string?> Idx = new("--idx") { Description = "IDX image file (MNIST format, 0x00000803), optionally gzip-compressed." };
    private readonly Option<bool> Shapes = new("--shapes") { Description = "Train on the built-in synthetic shapes (discs and squares)." };
    private readonly Option<int?> Size = new("--size") { Description = "Image height and width, e.g. 16, 28 or 32 (default: 32 for --images, the file's size for --idx, 16 for --shapes)." };
    private readonly Option<int?> Channels = new("--channels") { Description = "1 (grey) or 3 (RGB) (default: 3 for --images, 1 otherwise)." };
    private readonly Option<int> Steps = new("--steps") { Description = "Optimiser steps in total (a resumed run counts the checkpoint's steps).", DefaultValueFactory = _ => 2000 };
    private readonly Option<int> Batch = new("--batch") { Description = "Images per step.", DefaultValueFactory = _ => 32 };
    private readonly Option<double> LearningRate = new("--lr") { Description = "Peak AdamW learning rate.", DefaultValueFactory = _ => 2e-3 };
    private readonly Option<int> Warmup = new("--warmup") { Description = "Linear learning-rate warm-up steps.", DefaultValueFactory = _ => 100 };
    private readonly Option<double> Ema = new("--ema") { Description = "EMA decay of the saved weights (0 disables).", DefaultValueFactory = _ => 0.995 };
    private readonly Option<int> Seed = new("--seed") { Description = "Seed for weights, batches and noise.", DefaultValueFactory = _ => 0 };
    private readonly Option<string> Out = new("--out") { Description = "The ML.NET model zip to write.", Required = true };
    private readonly Option<string?> Checkpoint = new("--checkpoint") { Description = "Training-state file, written periodically and on Ctrl+C; an existing one is resumed (default: <out>.state.zip)." };
    private readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Steps between checkpoints.", DefaultValueFactory = _ => 250 };
    private readonly Option<bool> Fresh = new("--fresh") { Description = "Ignore an existing checkpoint and start from new weights." };
    private readonly Option<int> BaseChannels = new("--base-channels") { Description = "Channels of the UNet's first level.", DefaultValueFactory = _ => 32 };
    private readonly Option<string> Multipliers = new("--multipliers") { Description = "Channel multiplier per UNet level, comma-separated.", DefaultValueFactory = _ => "1,2,2" };
    private readonly Option<string> Schedule = new Option<string>("--schedule") { Description = "Noise schedule.", DefaultValueFactory = _ => "linear" }
        .AcceptOnlyFromAmong("linear", "cosine", "scaled-linear", "sigmoid");
    private readonly Option<string> Prediction = new Option<string>("--prediction") { Description = "What the network predicts: eps (noise), v or x0.", DefaultValueFactory = _ => "v" }
        .AcceptOnlyFromAmong("eps", "v", "x0");
    private readonly Option<string> LrDecay = new Option<string>("--lr-decay") { Description = "Learning rate after warm-up: constant, or linear or cosine decay to 0 at the last step.", DefaultValueFactory = _ => "cosine" }
        .AcceptOnlyFromAmong("constant", "linear", "cosine");
    private readonly Option<double> MinSnrGamma = new("--min-snr-gamma") { Description = "Min-SNR-γ loss weighting (5 is the paper's choice; 0 turns it off).", DefaultValueFactory = _ => 5 };
    private readonly Option<double> OffsetNoise = new("--offset-noise") { Description = "Offset noise strength (0.1 is usual; 0 is off).", DefaultValueFactory = _ => 0 };
    private readonly Option<bool> ZeroTerminalSnr = new("--zero-terminal-snr") { Description = "Rescale the noise schedule to zero signal at its last step (use with --prediction v)." };
    private readonly Option<bool> Flip = new("--flip") { Description = "Random left-right flips of training images." };
    private readonly Option<string?> From = new("--from") { Description = "Fine-tune: start from this model zip or Hugging Face diffusers folder (its network, weights, schedule and prediction; images are resized to its size)." };
    private readonly Option<bool> SkipBadImages = new("--skip-bad-images") { Description = "Skip images that cannot be read (reported at the end) instead of stopping." };
    private readonly Option<int?> MaxImages = new("--max-images") { Description = "Use at most this many images of the folder or IDX file." };
    private readonly Option<int> ShapeCount = new("--shape-count") { Description = "Number of built-in shape images for --shapes.", DefaultValueFactory = _ => ImageSources.DefaultShapeCount };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new TrainCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("train", "Train a diffusion model through the ML.NET pipeline and save it as a model zip.")
        {
            Images, Idx, Shapes, Size, Channels, Steps, Batch, LearningRate, Warmup, Ema, Seed, Out, Checkpoint, CheckpointEvery, Fresh,
            BaseChannels, Multipliers, Schedule, Prediction, LrDecay, MinSnrGamma, OffsetNoise, ZeroTerminalSnr, Flip, From, SkipBadImages, MaxImages, ShapeCount,
        };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private enum Source { Folder, IdxFile, Shapes }

    private int Run(ParseResult parse, CliContext ctx)
    {
        // ---- Check everything before any work starts. ----
        string? folder = parse.GetValue(Images), idx = parse.GetValue(Idx);
        bool shapes = parse.GetValue(Shapes);
        int given = (folder is null ? 0 : 1) + (idx is null ? 0 : 1) + (shapes ? 1 : 0);
        if (given != 1) throw new UsageException(given == 0 ? "Give the training data: --images <folder>, --idx <file> or --shapes." : "Give only one of --images, --idx and --shapes.");
        var source = folder is not null ? Source.Folder : idx is not null ? Source.IdxFile : Source.Shapes;

        int? maxImages = parse.GetValue(MaxImages);
        if (maxImages is < 1) throw new UsageException($"--max-images must be positive, not {maxImages}.");
        string[] files = source == Source.Folder ? ImageSources.ListImageFiles(folder!, maxImages) : [];
        // A model to fine-tune decides the network, the image size and channels.
        string? from = parse.GetValue(From);
        using var start = from is null ? null
            : Directory.Exists(from) ? LoadedModel.FromDiffusers(new MLContext(seed: 0), from)
            : LoadedModel.Load(new MLContext(seed: 0), from);
        int size = parse.GetValue(Size) ?? (start is not null ? (int)start.Model.ImageShape[1] : (int?)null) ?? source switch
        {
            Source.Folder => 32,
            Source.IdxFile => ImageSources.IdxSquareSize(idx!) ?? throw new UsageException($"IDX file '{idx}' holds non-square images; give --size."),
            _ => 16,
        };
        if (size is < 8 or > 256) throw new UsageException($"--size must be between 8 and 256, not {size}.");
        int channels = parse.GetValue(Channels) ?? (start is not null ? (int)start.Model.ImageShape[0] : source == Source.Folder ? 3 : 1);
        if (channels is not (1 or 3)) throw new UsageException($"--channels must be 1 or 3, not {channels}.");
        if (channels != 1 && source != Source.Folder)
            throw new UsageException($"{(source == Source.IdxFile ? "IDX" : "Built-in shape")} images are grey; use --channels 1.");

        int steps = Positive(parse.GetValue(Steps), "--steps");
        int batch = Positive(parse.GetValue(Batch), "--batch");
        double lr = parse.GetValue(LearningRate);
        if (!(lr > 0 && lr < 1)) throw new UsageException($"--lr must lie between 0 and 1, not {lr.ToString(CultureInfo.InvariantCulture)}.");
        int warmup = parse.GetValue(Warmup);
        if (warmup < 0) throw new UsageException($"--warmup must not be negative, not {warmup}.");
        double ema = parse.GetValue(Ema);
        if (!(ema >= 0 && ema < 1)) throw new UsageException($"--ema must lie in [0, 1), not {ema.ToString(CultureInfo.InvariantCulture)}.");
        double g = parse.GetValue(MinSnrGamma);
        if (!(g >= 0 && double.IsFinite(g))) throw new UsageException($"--min-snr-gamma must be positive (or 0 for uniform weighting), not {g.ToString(CultureInfo.InvariantCulture)}.");
        double? gamma = g > 0 ? g : null;
        double offsetNoise = parse.GetValue(OffsetNoise);
        if (!(offsetNoise >= 0 && double.IsFinite(offsetNoise))) throw new UsageException($"--offset-noise must not be negative, not {offsetNoise.ToString(CultureInfo.InvariantCulture)}.");
        int checkpointEvery = Positive(parse.GetValue(CheckpointEvery), "--checkpoint-every");
        int shapeCount = Positive(parse.GetValue(ShapeCount), "--shape-count");
        int baseChannels = parse.GetValue(BaseChannels);
        int[] multipliers = ParseMultipliers(parse.GetValue(Multipliers)!);

        string outPath = parse.GetValue(Out)!;
        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath)) throw new UsageException($"--out must name a file, not '{outPath}'.");
        string stem = outPath.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? outPath[..^4] : outPath;
        string checkpoint = parse.GetValue(Checkpoint) ?? stem + ".state.zip";
        string lossPng = stem + ".loss.png", lossCsv = stem + ".loss.csv";

        // The network must be buildable for this size; UNetOptions says what is wrong.
        if (start is null)
        {
            try
            {
                new UNetOptions
                {
                    ImageChannels = channels, ImageSize = size, BaseChannels = baseChannels, ChannelMultipliers = multipliers,
                    AttentionResolutions = [size >> (multipliers.Length - 1)],
                }.Validate();
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"The network cannot be built with --size {size}, --base-channels {baseChannels}, --multipliers {string.Join(",", multipliers)}: {ErrorText.Of(e)}");
            }
        }

        foreach (string path in new[] { outPath, checkpoint, lossPng })
            if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);

        bool fresh = parse.GetValue(Fresh);
        bool resuming = !fresh && File.Exists(checkpoint);

        // ---- The ML.NET pipeline. ----
        var ml = new MLContext(seed: parse.GetValue(Seed));
        using var cancelRegistration = ctx.Cancellation.Register(() => ml.CancelExecution());
        var losses = new LossLog();
        var meter = new RateMeter();
        int lastStep = 0;
        long skipped = 0;
        Action<int, string>? report = null;    // the progress display, once it is running
        var options = new DiffusionTrainingOptions
        {
            ImageChannels = channels,
            ImageSize = size,
            BaseChannels = baseChannels,
            ChannelMultipliers = multipliers,
            Schedule = new NoiseScheduleOptions
            {
                Kind = parse.GetValue(Schedule) switch { "cosine" => NoiseScheduleKind.Cosine, "scaled-linear" => NoiseScheduleKind.ScaledLinear, "sigmoid" => NoiseScheduleKind.Sigmoid, _ => NoiseScheduleKind.Linear },
                ZeroTerminalSnr = parse.GetValue(ZeroTerminalSnr),
            },
            Prediction = parse.GetValue(Prediction) switch { "v" => PredictionType.VPrediction, "x0" => PredictionType.Sample, _ => PredictionType.Epsilon },
            LearningRateDecay = parse.GetValue(LrDecay) switch { "linear" => LearningRateDecay.Linear, "cosine" => LearningRateDecay.Cosine, _ => LearningRateDecay.Constant },
            MinSnrGamma = gamma,
            OffsetNoise = offsetNoise,
            TrainingSteps = steps,
            BatchSize = batch,
            LearningRate = lr,
            WarmupSteps = warmup,
            EmaDecay = ema,
            RandomHorizontalFlip = parse.GetValue(Flip),
            SkipBadRows = parse.GetValue(SkipBadImages),
            StartFrom = start?.Model,
            Seed = parse.GetValue(Seed),
            Device = "auto",
            ReportEvery = 1,
            Progress = p =>
            {
                if (losses.Count == 0 && p.Step > 1)
                {
                    ctx.Line($"  resumed at step {p.Step - 1}");
                    if (resuming) losses.Continue(lossCsv, p.Step - 1);   // the earlier run's steps, up to the checkpoint's
                }
                losses.Add(p.Step, p.Loss, p.LearningRate);
                // Reported before the step's checkpoint is written, so the CSV never lacks a step the checkpoint holds.
                if (p.Step % checkpointEvery == 0) losses.WriteCsv(lossCsv);
                lastStep = p.Step;
                skipped = p.SkippedRows;
                meter.Report(p.Step);
                double imagesPerStep = p.StepsPerSecond > 0 ? p.ImagesPerSecond / p.StepsPerSecond : batch;
                report?.Invoke(p.Step, FormattableString.Invariant($"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  {meter.PerSecond:F1} steps/s  {meter.PerSecond * imagesPerStep:F0} images/s  ETA {meter.Eta(p.TotalSteps - p.Step)}"));
            },
            CheckpointPath = checkpoint,
            CheckpointEvery = checkpointEvery,
            ResumeFromCheckpoint = !fresh,
            CancellationToken = ctx.Cancellation,
        };

        IDataView data;
        IEstimator<ITransformer> pipeline;
        string description;
        switch (source)
        {
            case Source.Folder:
                data = ml.Data.LoadFromEnumerable(files.Select(f => new ImageFileRow { Path = f }).ToList());
                options.ImageColumnName = "Image";
                // Decoded and resized on a background thread as training runs, so a folder of any size fits in memory.
                options.DataLoading = TrainingDataLoading.Streaming;
                pipeline = ml.Transforms.LoadImages("Image", folder!, nameof(ImageFileRow.Path))
                    .Append(ml.Transforms.ResizeImages("Image", size, size))
                    .Append(ml.Transforms.TrainDiffusion(options));
                description = $"{files.Length} images from '{folder}' resized to {size}×{size}, {(channels == 1 ? "grey" : "RGB")}";
                break;
            case Source.IdxFile:
                var idxRows = ImageSources.Idx(idx!, size, maxImages);
                data = ImageSources.ToDataView(ml, idxRows, 1, size);
                options.ImageColumnName = nameof(PixelRow.Pixels);
                options.PixelRange = PixelRange.Bytes;
                pipeline = ml.Transforms.TrainDiffusion(options);
                description = $"{idxRows.Length} images from IDX file '{idx}' at {size}×{size}, grey";
                break;
            default:
                data = ImageSources.ToDataView(ml, ImageSources.Shapes(shapeCount, size), 1, size);
                options.ImageColumnName = nameof(PixelRow.Pixels);
                options.PixelRange = PixelRange.Unit;
                pipeline = ml.Transforms.TrainDiffusion(options);
                description = $"{shapeCount} built-in shape images at {size}×{size}, grey";
                break;
        }

        ctx.Line($"Training on {description}.");
        ctx.Line(start is null
            ? $"UNet: base channels {baseChannels}, multipliers {string.Join(",", multipliers)}; {steps} steps of {batch} images, learning rate {lr}, seed {parse.GetValue(Seed)}."
            : $"Fine-tuning '{start.Path}' ({Networks.NoisePredictors.NameOf(start.Model.NetworkOptions.GetType())}, {start.Model.ImageShape[0]}×{start.Model.ImageShape[1]}×{start.Model.ImageShape[2]}); {steps} steps of {batch} images, learning rate {lr}, seed {parse.GetValue(Seed)}.");
        if (resuming) ctx.Line($"Resuming from checkpoint '{checkpoint}' (use --fresh to start over).");

        ITransformer model;
        try
        {
            model = ctx.WithProgress($"Training {steps} steps", steps, display =>
            {
                report = display;
                return pipeline.Fit(data);
            });
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            losses.Save(lossPng, lossCsv);
            if (File.Exists(checkpoint))
                ctx.Line($"Training stopped{(lastStep > 0 ? $" after step {lastStep}" : "")}. The training state is kept in '{checkpoint}'; run the same command again to continue from it.");
            else
                ctx.Line($"Training stopped before the first step; no checkpoint was written.");
            return ExitCodes.Cancelled;
        }
        catch (CheckpointFormatException e) when (resuming)
        {
            throw new CliRuntimeException($"{e.Message} Use --fresh to start over, or the settings the checkpoint was written with.", e);
        }
        catch (UnreadableTrainingRowException e)
        {
            // The stage's problem names the row, the file and the kept training state; the way to skip such rows is the tool's option.
            throw new CliRuntimeException($"{e.Problem} Add --skip-bad-images to skip unreadable images.", e);
        }
        catch (InvalidOperationException e) when (!Errors.IsCancellation(e))
        {
            throw new CliRuntimeException(e.Message, e);
        }

        if (losses.Count == 0)
            ctx.Line($"The checkpoint '{checkpoint}' already holds {steps} or more steps; nothing to train (raise --steps to continue).");
        ml.Model.Save(model, data.Schema, outPath);
        var trained = DiffusionTrainingTransformer.FindModel(model);
        ctx.Line($"Saved the model ({trained.TrainingSteps} steps) to '{outPath}'.");
        if (skipped > 0) ctx.Line($"Skipped {skipped} unreadable image{(skipped == 1 ? "" : "s")}.");
        if (losses.Save(lossPng, lossCsv)) ctx.Line($"Loss curve: '{lossPng}' (values in '{lossCsv}').");
        ctx.Line($"Training state: '{checkpoint}' (raise --steps and run again to continue training).");
        (model as IDisposable)?.Dispose();
        return ExitCodes.Success;
    }

    private static int Positive(int value, string name)
        => value >= 1 ? value : throw new UsageException($"{name} must be positive, not {value}.");

    private static int[] ParseMultipliers(string text)
    {
        int[] values = CommaList.Integers(text, "--multipliers", min: 1, max: 16, example: "1,2,2");
        if (values.Length is 0 or > 5) throw new UsageException($"--multipliers needs 1 to 5 levels, not '{text}'.");
        return values;
    }
}
