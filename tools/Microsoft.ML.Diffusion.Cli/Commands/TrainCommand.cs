using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Diffusion.Adapters;
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
/// shapes), saves the model zip, the training state and a loss plot. With <c>--lora-rank</c> it trains a LoRA on
/// the <c>--from</c> model instead (a Stable Diffusion model on captioned images) and saves the adapter file.
/// </summary>
internal sealed class TrainCommand
{
    // The library's own defaults, so the command line trains as TrainDiffusion does unless told otherwise.
    private static readonly DiffusionTrainingOptions Defaults = new();

    private readonly Option<string?> Images = new("--images") { Description = "Folder of .png/.jpg training images (searched recursively)." };
    private readonly Option<string?> Idx = new("--idx") { Description = "IDX image file (MNIST format, 0x00000803), optionally gzip-compressed." };
    private readonly Option<bool> Shapes = new("--shapes") { Description = "Train on the built-in synthetic shapes (discs and squares)." };
    private readonly Option<int?> Size = new("--size") { Description = "Image height and width, e.g. 16, 28 or 32 (default: 32 for --images, the file's size for --idx, 16 for --shapes)." };
    private readonly Option<int?> Channels = new("--channels") { Description = "1 (grey) or 3 (RGB) (default: 3 for --images, 1 otherwise)." };
    private readonly Option<int> Steps = new("--steps") { Description = "Optimiser steps in total (a resumed run counts the checkpoint's steps).", DefaultValueFactory = _ => Defaults.TrainingSteps };
    private readonly Option<int?> Batch = new("--batch") { Description = $"Images per step (default: {DefaultBatch}; {StableDiffusionBatch} for a LoRA on Stable Diffusion)." };
    private readonly Option<double?> LearningRate = new("--lr") { Description = FormattableString.Invariant($"Peak AdamW learning rate (default: {Defaults.LearningRate}; {StableDiffusionLearningRate} for a LoRA on Stable Diffusion).") };
    private readonly Option<int> Warmup = new("--warmup") { Description = "Linear learning-rate warm-up steps.", DefaultValueFactory = _ => Defaults.WarmupSteps };
    private readonly Option<double> Ema = new("--ema") { Description = "EMA decay of the saved weights (0 disables).", DefaultValueFactory = _ => 0.995 };
    private readonly Option<int> Seed = new("--seed") { Description = "Seed for weights, batches and noise.", DefaultValueFactory = _ => 0 };
    private readonly Option<string> Out = new("--out") { Description = "The ML.NET model zip to write (with --lora-rank: the LoRA file, a .safetensors in diffusers' layout).", Required = true };
    private readonly Option<string?> Checkpoint = new("--checkpoint") { Description = "Training-state file, written periodically and on Ctrl+C; an existing one is resumed (default: <out>.state.zip)." };
    private readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Steps between checkpoints.", DefaultValueFactory = _ => 250 };
    private readonly Option<bool> Fresh = new("--fresh") { Description = "Ignore an existing checkpoint and start from new weights." };
    private readonly Option<int> BaseChannels = new("--base-channels") { Description = "Channels of the UNet's first level.", DefaultValueFactory = _ => Defaults.BaseChannels };
    private readonly Option<string> Multipliers = new("--multipliers") { Description = "Channel multiplier per UNet level, comma-separated.", DefaultValueFactory = _ => string.Join(",", Defaults.ChannelMultipliers) };
    private readonly Option<string> Schedule = new Option<string>("--schedule") { Description = "Noise schedule.", DefaultValueFactory = _ => "linear" }
        .AcceptOnlyFromAmong("linear", "cosine", "scaled-linear", "sigmoid");
    private readonly Option<string> Prediction = new Option<string>("--prediction") { Description = "What the network predicts: eps (noise), v or x0.", DefaultValueFactory = _ => Defaults.Prediction switch { PredictionType.Epsilon => "eps", PredictionType.VPrediction => "v", _ => "x0" } }
        .AcceptOnlyFromAmong("eps", "v", "x0");
    private readonly Option<string> LrDecay = new Option<string>("--lr-decay") { Description = "Learning rate after warm-up: constant, or linear or cosine decay to 0 at the last step.", DefaultValueFactory = _ => Defaults.LearningRateDecay.ToString().ToLowerInvariant() }
        .AcceptOnlyFromAmong("constant", "linear", "cosine");
    private readonly Option<double> MinSnrGamma = new("--min-snr-gamma") { Description = "Min-SNR-γ loss weighting (5 is the paper's choice; 0 turns it off).", DefaultValueFactory = _ => Defaults.MinSnrGamma ?? 0 };
    private readonly Option<double> OffsetNoise = new("--offset-noise") { Description = "Offset noise strength (0.1 is usual; 0 is off).", DefaultValueFactory = _ => Defaults.OffsetNoise };
    private readonly Option<bool> ZeroTerminalSnr = new("--zero-terminal-snr") { Description = "Rescale the noise schedule to zero signal at its last step (use with --prediction v)." };
    private readonly Option<bool> Flip = new("--flip") { Description = "Random left-right flips of training images." };
    private readonly Option<string?> From = new("--from") { Description = "Fine-tune: start from this model zip or Hugging Face diffusers folder (its network, weights, schedule and prediction; images are resized to its size); with --lora-rank also a Stable Diffusion folder or single file." };
    private readonly Option<bool> SkipBadImages = new("--skip-bad-images") { Description = "Skip images that cannot be read (reported at the end) instead of stopping." };
    private readonly Option<int?> MaxImages = new("--max-images") { Description = "Use at most this many images of the folder or IDX file." };
    private readonly Option<int> ShapeCount = new("--shape-count") { Description = "Number of built-in shape images for --shapes.", DefaultValueFactory = _ => ImageSources.DefaultShapeCount };
    private readonly Option<int?> LoraRank = new("--lora-rank") { Description = "Train a LoRA of this rank on the --from model (its weights stay frozen) and write the adapter to --out; Ctrl+C keeps the LoRA's training state, as for whole models." };
    private readonly Option<double?> LoraAlpha = new("--lora-alpha") { Description = "The LoRA's alpha: its update is scaled by alpha / rank (default: the rank, a scale of 1)." };
    private readonly Option<string?> LoraTargets = new("--lora-targets") { Description = "Layers the LoRA adapts, comma-separated; a name matches every layer whose dotted name ends with it (default: the attention projections, e.g. to_q,to_k,to_v,to_out.0; add e.g. conv1,conv2,proj_in,proj_out,ff.net.2)." };
    private readonly Option<string?> Captions = new("--captions") { Description = "Stable Diffusion: a text file of '<image path relative to --images><tab><caption>' lines (or a Hugging Face metadata.jsonl of file_name/text objects); images it does not name take the .txt file of the same name beside them." };
    private readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "Stable Diffusion single files (--from model.safetensors|.ckpt): the tokenizer/ folder of a diffusers SD model of the same version." };

    // Images per step and peak learning rate unless told otherwise; a LoRA on Stable Diffusion takes diffusers' train_text_to_image_lora.py rate and single images (a CPU holds one 512×512 step).
    private const int DefaultBatch = 32, StableDiffusionBatch = 1;
    private const double StableDiffusionLearningRate = 1e-4;

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new TrainCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("train", "Train a diffusion model through the ML.NET pipeline and save it as a model zip.")
        {
            Images, Idx, Shapes, Size, Channels, Steps, Batch, LearningRate, Warmup, Ema, Seed, Out, Checkpoint, CheckpointEvery, Fresh,
            BaseChannels, Multipliers, Schedule, Prediction, LrDecay, MinSnrGamma, OffsetNoise, ZeroTerminalSnr, Flip, From, SkipBadImages, MaxImages, ShapeCount,
            LoraRank, LoraAlpha, LoraTargets, Captions, Tokenizer,
        };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private enum Source { Folder, IdxFile, Shapes }

    private int Run(ParseResult parse, CliContext ctx)
    {
        // Everything is checked before any work starts.
        var data = ReadData(parse);
        using var start = ReadStart(parse);
        var run = ReadSettings(parse, data, start);
        var ml = new MLContext(seed: parse.GetValue(Seed));
        using var cancelRegistration = ctx.Cancellation.Register(() => ml.CancelExecution());
        var log = new ProgressLog(ctx, run);
        var options = TrainingOptions(parse, run, log, ctx.Cancellation);
        var (view, pipeline, description) = Pipeline(ml, run, options);

        ctx.Line($"Training on {description}.");
        string schedule = FormattableString.Invariant($"{run.Steps} steps of {run.Batch} image{(run.Batch == 1 ? "" : "s")}, learning rate {run.LearningRate}, seed {parse.GetValue(Seed)}");
        ctx.Line(start is null ? $"UNet: base channels {run.BaseChannels}, multipliers {string.Join(",", run.Multipliers)}; {schedule}."
            : run.Lora is { } lora ? FormattableString.Invariant($"LoRA of rank {lora.Rank}, alpha {lora.Alpha ?? lora.Rank}, on {(lora.TargetModules is { } t ? $"the layers named {string.Join(", ", t)}" : "the attention projections")} of {start.Description}; {schedule}.")
            : $"Fine-tuning {start.Description}; {schedule}.");
        if (run.Lora is not null && !run.OutPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            ctx.Line($"Note: '{run.OutPath}' gets a safetensors file (diffusers' LoRA layout) whatever its name; LoRA files are read by their content.");
        if (run.Resuming) ctx.Line($"Resuming from checkpoint '{run.Checkpoint}' (use --fresh to start over).");

        var model = Fit(ctx, run, log, pipeline, view);
        if (model is null) return ExitCodes.Cancelled;
        using var disposeModel = model as IDisposable;
        if (log.Losses.Count == 0)
            ctx.Line($"The checkpoint '{run.Checkpoint}' already holds {run.Steps} or more steps; nothing to train (with --lr-decay constant, raise --steps to continue; a decaying learning rate ends at --steps, so continue from the saved model with --from instead).");
        if (run.Lora is not null)
        {
            // The LoRA is fused into the start model, whose files still hold its own weights: only the adapter is written.
            var stage = (model as IEnumerable<ITransformer> ?? [model]).OfType<DiffusionTrainingTransformer>().Last();
            string file = stage.Lora!.Save(run.OutPath);
            string use = start!.TakesCaptions ? $"--model {start.Path} --prompt \"…\"" : Directory.Exists(start.Path) ? $"--diffusers {start.Path}" : $"--model {start.Path}";
            ctx.Line($"Saved the LoRA ({stage.Lora.UNetLayers} layers of rank {run.Lora.Rank}, diffusers' layout) to '{file}'; generate with it: mldiffusion generate {use} --lora {file}[:scale] --out grid.png");
        }
        else
        {
            ml.Model.SaveAtomically(model, view.Schema, run.OutPath);
            var trained = DiffusionTrainingTransformer.FindModel(model);
            ctx.Line($"Saved the model ({trained.TrainingSteps} steps) to '{run.OutPath}'.");
        }
        if (log.Skipped > 0) ctx.Line($"Skipped {log.Skipped} unreadable image{(log.Skipped == 1 ? "" : "s")}.");
        if (log.Losses.Save(run.LossPng, run.LossCsv)) ctx.Line($"Loss curve: '{run.LossPng}' (values in '{run.LossCsv}').");
        ctx.Line($"Training state: '{run.Checkpoint}' (the same command resumes it; with --lr-decay constant, a higher --steps continues it).");
        return ExitCodes.Success;
    }

    // What the command line asks for, checked.
    private sealed record RunSettings(Source Source, string? Folder, string? Idx, string[] Files, int? MaxImages, TrainingStart? Start, int Size,
        int Channels, int Steps, int Batch, double LearningRate, int Warmup, double Ema, double? Gamma, double OffsetNoise, int CheckpointEvery,
        int ShapeCount, int BaseChannels, int[] Multipliers, string OutPath, string Checkpoint, string LossPng, string LossCsv, bool Fresh, bool Resuming,
        LoraTrainingOptions? Lora, string[]? Captions);

    // The training data the command line names: exactly one of a folder, an IDX file and the built-in shapes.
    private sealed record DataChoice(Source Source, string? Folder, string? Idx, string[] Files, int? MaxImages);

    private DataChoice ReadData(ParseResult parse)
    {
        string? folder = parse.GetValue(Images), idx = parse.GetValue(Idx);
        bool shapes = parse.GetValue(Shapes);
        int given = (folder is null ? 0 : 1) + (idx is null ? 0 : 1) + (shapes ? 1 : 0);
        if (given != 1) throw new UsageException(given == 0 ? "Give the training data: --images <folder>, --idx <file> or --shapes." : "Give only one of --images, --idx and --shapes.");
        var source = folder is not null ? Source.Folder : idx is not null ? Source.IdxFile : Source.Shapes;
        int? maxImages = parse.GetValue(MaxImages);
        if (maxImages is < 1) throw new UsageException($"--max-images must be positive, not {maxImages}.");
        string[] files = source == Source.Folder ? ImageSources.ListImageFiles(folder!, maxImages) : [];
        return new DataChoice(source, folder, idx, files, maxImages);
    }

    // A model to fine-tune (a zip, a diffusers folder, or a Stable Diffusion model for a LoRA) decides the network, the image size and channels.
    private TrainingStart? ReadStart(ParseResult parse)
    {
        string? from = parse.GetValue(From);
        if (from is null)
        {
            if (parse.GetValue(LoraRank) is not null) throw new UsageException("--lora-rank needs --from <model>: a LoRA trains on an existing model (a model zip, a diffusers folder or a Stable Diffusion model).");
            if (parse.GetValue(LoraAlpha) is not null || parse.GetValue(LoraTargets) is not null) throw new UsageException("--lora-alpha and --lora-targets need --from <model> and --lora-rank.");
            if (parse.GetValue(Captions) is not null) throw new UsageException("--captions needs --from <Stable Diffusion model>, whose text encoder reads them.");
            if (parse.GetValue(Tokenizer) is not null) throw new UsageException("--tokenizer needs --from <Stable Diffusion single file>.");
            return null;
        }
        // The LoRA settings are checked before a model that may take long to load is read.
        ReadLora(parse);
        return TrainingStart.Load(from, parse.GetValue(Tokenizer));
    }

    // The --lora-* options checked; null without --lora-rank.
    private LoraTrainingOptions? ReadLora(ParseResult parse)
    {
        int? rank = parse.GetValue(LoraRank);
        double? alpha = parse.GetValue(LoraAlpha);
        string? targets = parse.GetValue(LoraTargets);
        if (rank is null)
        {
            if (alpha is not null || targets is not null) throw new UsageException("--lora-alpha and --lora-targets need --lora-rank.");
            return null;
        }
        if (rank < 1) throw new UsageException($"--lora-rank must be positive, not {rank}.");
        if (alpha is { } a && !(a > 0 && double.IsFinite(a))) throw new UsageException($"--lora-alpha must be positive, not {a.ToString(CultureInfo.InvariantCulture)}.");
        string[]? modules = targets is null ? null : CommaList.Split(targets, "--lora-targets");
        if (modules is { Length: 0 }) throw new UsageException("--lora-targets is empty; name layers such as to_q,to_v (or leave it out for the attention projections).");
        return new LoraTrainingOptions { Rank = rank.Value, Alpha = alpha, TargetModules = modules };
    }

    private RunSettings ReadSettings(ParseResult parse, DataChoice data, TrainingStart? start)
    {
        var (source, folder, idx, files, maxImages) = (data.Source, data.Folder, data.Idx, data.Files, data.MaxImages);
        var lora = start is null ? null : ReadLora(parse);
        bool stableDiffusion = start is { TakesCaptions: true };
        if (start is not null) CheckStart(parse, start, lora, source);
        int size = parse.GetValue(Size) ?? (start is not null ? (int)start.Model.ImageShape[1] : (int?)null) ?? source switch
        {
            Source.Folder => 32,
            Source.IdxFile => ImageSources.IdxSquareSize(idx!) ?? throw new UsageException($"IDX file '{idx}' holds non-square images; give --size."),
            _ => 16,
        };
        if (stableDiffusion)
        {
            if (size is < 8 or > 2048 || size % 8 != 0) throw new UsageException($"--size must be a multiple of 8 from 8 to 2048 for Stable Diffusion, not {size}.");
        }
        else if (size is < 8 or > 256) throw new UsageException($"--size must be between 8 and 256, not {size}.");
        int channels = parse.GetValue(Channels) ?? (start is not null ? (int)start.Model.ImageShape[0] : source == Source.Folder ? 3 : 1);
        if (channels is not (1 or 3)) throw new UsageException($"--channels must be 1 or 3, not {channels}.");
        if (channels != 1 && source != Source.Folder)
            throw new UsageException($"{(source == Source.IdxFile ? "IDX" : "Built-in shape")} images are grey; use --channels 1.");

        int steps = Positive(parse.GetValue(Steps), "--steps");
        int batch = Positive(parse.GetValue(Batch) ?? (stableDiffusion ? StableDiffusionBatch : DefaultBatch), "--batch");
        double lr = parse.GetValue(LearningRate) ?? (stableDiffusion ? StableDiffusionLearningRate : Defaults.LearningRate);
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
        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath))
            throw new UsageException($"--out must name a file{(lora is null ? "" : " (e.g. pytorch_lora_weights.safetensors)")}, not '{outPath}'.");
        string stem = outPath.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? outPath[..^4]
            : outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? outPath[..^".safetensors".Length] : outPath;
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

        // Captions last: every option is checked before the caption files are read.
        string[]? captions = stableDiffusion ? ImageCaptions.Read(folder!, files, parse.GetValue(Captions)) : null;

        bool fresh = parse.GetValue(Fresh);
        bool resuming = !fresh && File.Exists(checkpoint);
        return new RunSettings(source, folder, idx, files, maxImages, start, size, channels, steps, batch, lr, warmup, ema, gamma, offsetNoise,
            checkpointEvery, shapeCount, baseChannels, multipliers, outPath, checkpoint, lossPng, lossCsv, fresh, resuming, lora, captions);
    }

    // What the command line can train on the --from model: whole pixel-space models and LoRAs on them (images alone),
    // and LoRAs on Stable Diffusion (captioned images from a folder).
    private void CheckStart(ParseResult parse, TrainingStart start, LoraTrainingOptions? lora, Source source)
    {
        if (start.TakesCaptions)
        {
            if (lora is null)
                throw new UsageException($"'{start.Path}' is a Stable Diffusion model; the command line trains LoRAs on it: add --lora-rank (e.g. 4).");
            if (source != Source.Folder)
                throw new UsageException("A Stable Diffusion model trains on captioned images: give --images <folder> (with --captions or a .txt caption beside each image).");
            if (parse.GetValue(Flip))
                throw new UsageException("--flip is not available for Stable Diffusion: images are encoded to latents once. Add mirrored copies of the images instead.");
            return;
        }
        if (parse.GetValue(Captions) is not null)
            throw new UsageException($"--captions needs a model with a text encoder (Stable Diffusion); {start.Description} is a pixel-space model that trains on images alone.");
        if (start.Condition != Conditioning.ConditionKind.None)
            throw new UsageException($"{start.Description} is {start.Condition.ToString().ToLowerInvariant()}-conditional; the command line trains unconditional pixel-space models (and Stable Diffusion LoRAs on captions). Use TrainDiffusion with a condition column for this model.");
    }

    private DiffusionTrainingOptions TrainingOptions(ParseResult parse, RunSettings run, ProgressLog log, CancellationToken cancellation)
    {
        return new DiffusionTrainingOptions
        {
            ImageChannels = run.Channels,
            ImageSize = run.Size,
            BaseChannels = run.BaseChannels,
            ChannelMultipliers = run.Multipliers,
            Schedule = new NoiseScheduleOptions
            {
                Kind = parse.GetValue(Schedule) switch { "cosine" => NoiseScheduleKind.Cosine, "scaled-linear" => NoiseScheduleKind.ScaledLinear, "sigmoid" => NoiseScheduleKind.Sigmoid, _ => NoiseScheduleKind.Linear },
                ZeroTerminalSnr = parse.GetValue(ZeroTerminalSnr),
            },
            Prediction = parse.GetValue(Prediction) switch { "v" => PredictionType.VPrediction, "x0" => PredictionType.Sample, _ => PredictionType.Epsilon },
            LearningRateDecay = parse.GetValue(LrDecay) switch { "linear" => LearningRateDecay.Linear, "cosine" => LearningRateDecay.Cosine, _ => LearningRateDecay.Constant },
            MinSnrGamma = run.Gamma,
            OffsetNoise = run.OffsetNoise,
            TrainingSteps = run.Steps,
            BatchSize = run.Batch,
            LearningRate = run.LearningRate,
            WarmupSteps = run.Warmup,
            EmaDecay = run.Ema,
            RandomHorizontalFlip = parse.GetValue(Flip),
            SkipBadRows = parse.GetValue(SkipBadImages),
            StartFrom = run.Start?.Model,
            Lora = run.Lora,
            Seed = parse.GetValue(Seed),
            Device = "auto",
            ReportEvery = 1,
            Progress = log.Report,
            CheckpointPath = run.Checkpoint,
            CheckpointEvery = run.CheckpointEvery,
            ResumeFromCheckpoint = !run.Fresh,
            CancellationToken = cancellation,
        };
    }

    // The ML.NET pipeline for the source: LoadImages + ResizeImages + TrainDiffusion for a folder, float-pixel rows + TrainDiffusion otherwise.
    private static (IDataView Data, IEstimator<ITransformer> Pipeline, string Description) Pipeline(MLContext ml, RunSettings run, DiffusionTrainingOptions options)
    {
        IDataView data;
        IEstimator<ITransformer> pipeline;
        string description;
        switch (run.Source)
        {
            case Source.Folder when run.Captions is { } captions:
                // Stable Diffusion: the captions ride with the file names; a handful of images is encoded once by the autoencoder and kept as latents.
                data = ml.Data.LoadFromEnumerable(run.Files.Select((f, i) => new CaptionedImageFileRow { Path = f, Caption = captions[i] }).ToList());
                options.ImageColumnName = "Image";
                options.ConditionColumnName = nameof(CaptionedImageFileRow.Caption);
                options.DataLoading = TrainingDataLoading.Auto;
                pipeline = ml.Transforms.LoadImages("Image", run.Folder!, nameof(CaptionedImageFileRow.Path))
                    .Append(ml.Transforms.ResizeImages("Image", run.Size, run.Size))
                    .Append(ml.Transforms.TrainDiffusion(options));
                description = $"{run.Files.Length} captioned images from '{run.Folder}' resized to {run.Size}×{run.Size}";
                break;
            case Source.Folder:
                data = ml.Data.LoadFromEnumerable(run.Files.Select(f => new ImageFileRow { Path = f }).ToList());
                options.ImageColumnName = "Image";
                // Decoded and resized on a background thread as training runs, so a folder of any size fits in memory.
                options.DataLoading = TrainingDataLoading.Streaming;
                pipeline = ml.Transforms.LoadImages("Image", run.Folder!, nameof(ImageFileRow.Path))
                    .Append(ml.Transforms.ResizeImages("Image", run.Size, run.Size))
                    .Append(ml.Transforms.TrainDiffusion(options));
                description = $"{run.Files.Length} images from '{run.Folder}' resized to {run.Size}×{run.Size}, {(run.Channels == 1 ? "grey" : "RGB")}";
                break;
            case Source.IdxFile:
                var idxRows = ImageSources.Idx(run.Idx!, run.Size, run.MaxImages);
                data = ImageSources.ToDataView(ml, idxRows, 1, run.Size);
                options.ImageColumnName = nameof(PixelRow.Pixels);
                options.PixelRange = PixelRange.Bytes;
                pipeline = ml.Transforms.TrainDiffusion(options);
                description = $"{idxRows.Length} images from IDX file '{run.Idx}' at {run.Size}×{run.Size}, grey";
                break;
            default:
                data = ImageSources.ToDataView(ml, ImageSources.Shapes(run.ShapeCount, run.Size), 1, run.Size);
                options.ImageColumnName = nameof(PixelRow.Pixels);
                options.PixelRange = PixelRange.Unit;
                pipeline = ml.Transforms.TrainDiffusion(options);
                description = $"{run.ShapeCount} built-in shape images at {run.Size}×{run.Size}, grey";
                break;
        }
        return (data, pipeline, description);
    }

    // Fits the pipeline with a progress display; null when the run was cancelled (the training state is kept).
    private static ITransformer? Fit(CliContext ctx, RunSettings run, ProgressLog log, IEstimator<ITransformer> pipeline, IDataView data)
    {
        try
        {
            return ctx.WithProgress($"Training {run.Steps} steps", run.Steps, display =>
            {
                log.Display = display;
                return pipeline.Fit(data);
            });
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            log.Losses.Save(run.LossPng, run.LossCsv);
            if (File.Exists(run.Checkpoint))
                ctx.Line($"Training stopped{(log.LastStep > 0 ? $" after step {log.LastStep}" : "")}. The training state is kept in '{run.Checkpoint}'; run the same command again to continue from it.");
            else
                ctx.Line($"Training stopped before the first step; no checkpoint was written.");
            return null;
        }
        catch (CheckpointFormatException e) when (run.Resuming)
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
    }

    // The training's progress: the loss log (kept across a resume), the rate and the line the display shows.
    private sealed class ProgressLog(CliContext ctx, RunSettings run)
    {
        private readonly RateMeter _meter = new();

        public LossLog Losses { get; } = new();
        public int LastStep { get; private set; }
        public long Skipped { get; private set; }
        public Action<int, string>? Display { get; set; }

        public void Report(TrainingProgress p)
        {
            if (Losses.Count == 0 && p.Step > 1)
            {
                ctx.Line($"  resumed at step {p.Step - 1}");
                if (run.Resuming) Losses.Continue(run.LossCsv, p.Step - 1);   // the earlier run's steps, up to the checkpoint's
            }
            Losses.Add(p.Step, p.Loss, p.LearningRate);
            // Reported before the step's checkpoint is written, so the CSV never lacks a step the checkpoint holds.
            if (p.Step % run.CheckpointEvery == 0) Losses.WriteCsv(run.LossCsv);
            LastStep = p.Step;
            Skipped = p.SkippedRows;
            _meter.Report(p.Step);
            double imagesPerStep = p.StepsPerSecond > 0 ? p.ImagesPerSecond / p.StepsPerSecond : run.Batch;
            Display?.Invoke(p.Step, FormattableString.Invariant($"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  {_meter.PerSecond:F1} steps/s  {_meter.PerSecond * imagesPerStep:F0} images/s  ETA {_meter.Eta(p.TotalSteps - p.Step)}"));
        }
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
