using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet.Streaming;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Trains a diffusion model on an image column (DDPM's Algorithm 1). <see cref="Fit"/> reads the
/// images, trains the noise predictor and returns a <see cref="DiffusionTrainingTransformer"/> that
/// carries it. Progress goes to <c>MLContext.Log</c> and the optional callback;
/// <c>MLContext.CancelExecution()</c> or the options' token stop it between steps, after saving a
/// checkpoint when a checkpoint path is set.
/// </summary>
public sealed partial class DiffusionTrainingEstimator : IEstimator<DiffusionTrainingTransformer>
{
    private readonly IHost _host;
    private readonly DiffusionTrainingOptions _options;

    internal DiffusionTrainingEstimator(IHostEnvironment env, DiffusionTrainingOptions options)
    {
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionTrainingEstimator));
        _options = options?.Snapshot() ?? throw new ArgumentNullException(nameof(options));
        if (options.Lora is { } lora)
        {
            lora.Validate();
            if (options.StartFrom is null)
                throw new ArgumentException("LoRA training adapts a trained model: set StartFrom to the model (e.g. one loaded by StableDiffusionFormat.Load) whose network the adapters train on.", nameof(options));
        }
        if (options.ImageChannels is not (1 or 3 or 4))
            throw new ArgumentOutOfRangeException(nameof(options), options.ImageChannels, "ImageChannels must be 1, 3 or 4.");
        if (options.TrainingSteps < 0) throw new ArgumentOutOfRangeException(nameof(options), options.TrainingSteps, "TrainingSteps must not be negative.");
        if (options.CheckpointEvery < 1) throw new ArgumentOutOfRangeException(nameof(options), options.CheckpointEvery, "CheckpointEvery must be positive.");
        if (string.IsNullOrWhiteSpace(options.ImageColumnName)) throw new ArgumentException("ImageColumnName must be set.", nameof(options));
        if (options.ShuffleBufferSize is < 1) throw new ArgumentOutOfRangeException(nameof(options), options.ShuffleBufferSize, "ShuffleBufferSize must be positive (or null for the default).");
        if (!Enum.IsDefined(options.DataLoading)) throw new ArgumentOutOfRangeException(nameof(options), options.DataLoading, "Unknown DataLoading.");
        CheckLatentOptions(options);
    }

    // Data up to this size (as floats) is read into memory by TrainingDataLoading.Auto.
    internal const long InMemoryBytes = 256L << 20;

    // The default shuffle buffer's size (as floats).
    internal const long ShuffleBufferBytes = 128L << 20;

    // Batches the streaming producer may run ahead of training.
    private const int PrefetchBatches = 4;

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ImageColumn.Check(inputSchema, _options.ImageColumnName);
        if (_options.ConditionColumnName is { } condition && !inputSchema.TryFindColumn(condition, out _))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Condition column '{condition}' was not found in the input schema.");
        return inputSchema;
    }

    /// <inheritdoc/>
    public DiffusionTrainingTransformer Fit(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        var o = _options;
        if (o.StartFrom is { TakesPrompts: true } stableDiffusion) return FitStableDiffusion(input, stableDiffusion);
        var column = ImageColumn.Resolve(input.Schema, o.ImageColumnName, o.ImageChannels, o.ImageSize, o.PixelRange);
        var condition = o.ConditionColumnName is null ? null
            : ConditionColumn.ForTraining(input.Schema, o.ConditionColumnName, o.ClassCount, o.MaxTokens, o.TextWidth, o.TextLayers, o.TextHeads);
        // LoRA adapters train where the start model's weights are: the network is adapted in place.
        var device = o.Lora is not null ? o.StartFrom!.Device : DiffusionDevice.Resolve(o.Device);

        using var ch = _host.Start("Training");
        bool streaming = o.DataLoading switch
        {
            TrainingDataLoading.Streaming => true,
            TrainingDataLoading.InMemory => false,
            _ => !(input.GetRowCount() is { } rows && rows * column.Length * sizeof(float) <= InMemoryBytes),
        };
        ch.Info(streaming
            ? $"Training a diffusion model on {column.Channels}×{column.Size}×{column.Size} images streamed from column '{column.Name}' on {device}."
            : $"Training a diffusion model on {column.Channels}×{column.Size}×{column.Size} images read into memory from column '{column.Name}' on {device}.");

        var network = NetworkFor(input, column, condition);
        var schedule = o.StartFrom?.ScheduleOptions ?? o.Schedule ?? throw new ArgumentNullException(nameof(input), "DiffusionTrainingOptions.Schedule must be set.");
        // The hyper-parameters as given (this stage's own settings ride along unused), seeded from the MLContext when unset.
        // A decaying learning rate reaches 0 at the last training step unless told otherwise.
        var trainerOptions = o with
        {
            Seed = o.Seed ?? _host.Rand.Next(),
            DecaySteps = o.DecaySteps ?? Math.Max(1, o.TrainingSteps),
            Prediction = o.StartFrom?.Prediction ?? o.Prediction,
            EmaDecay = EmaDecay(stableDiffusion: false),
        };

        using var trainer = o.Lora is { } lora
            ? new DiffusionTrainer(o.StartFrom!, lora, trainerOptions)
            : new DiffusionTrainer(network, schedule, trainerOptions, device);
        StartOrResume(trainer, ch);

        int remaining = (int)Math.Max(0, o.TrainingSteps - trainer.StepsDone);
        var skipped = new StrongBox<long>();   // rows read into memory and skipped, for the progress reports
        Action<TrainingProgress> report = p =>
        {
            p = p with { SkippedRows = streaming ? p.SkippedRows : skipped.Value };
            ch.Info($"Step {p.Step}/{p.TotalSteps}: loss {p.Loss:F5}, learning rate {p.LearningRate:E2}, {p.StepsPerSecond:F2} steps/s, {p.ImagesPerSecond:F0} images/s, {p.DataWaitFraction:P1} waiting for data.");
            o.Progress?.Invoke(p);
        };
        Action<DiffusionTrainer> afterStep = t =>
        {
            _host.CheckAlive();   // honours MLContext.CancelExecution()
            if (o.CheckpointPath is not null && t.StepsDone % o.CheckpointEvery == 0)
                t.SaveState(o.CheckpointPath);
        };
        long skippedRows = Train(input, column, condition, trainer, streaming, remaining, report, afterStep, skipped, ch);
        if (skippedRows > 0) ch.Warning($"{skippedRows} unreadable training rows were skipped.");
        if (o.CheckpointPath is not null) trainer.SaveState(o.CheckpointPath);
        ch.Info($"Training finished at step {trainer.StepsDone}.");
        if (o.Lora is not null) return LoraResult(trainer, column.Name, condition?.Name, ch);
        var model = trainer.ToModel();
        model.DiffusersScheduler = o.StartFrom?.DiffusersScheduler;   // a fine-tuned diffusers model exports with its scheduler
        return new DiffusionTrainingTransformer(_host, model, column.Name, condition?.Name);
    }

    // The trained adapters fused into the start model, once the trainer has taken its own off it.
    private DiffusionTrainingTransformer LoraResult(DiffusionTrainer trainer, string imageColumn, string? conditionColumn, IChannel ch)
    {
        var model = _options.StartFrom!;
        var adapter = trainer.TrainedAdapter();
        FusedLora fused;
        try
        {
            trainer.Dispose();
            fused = LoraFusion.Of(model).Fuse(adapter, LoraTargets.Resolve(model, adapter), 1.0, "");
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
        ch.Info($"Fused the trained LoRA ({fused.UNetLayers} layers) into the start model.");
        return new DiffusionTrainingTransformer(_host, model, imageColumn, conditionColumn, fused);
    }

    // The noise predictor to train: the starting model's, the options' own kind, or the diffusers UNet of the UNet
    // settings' shape (UNet2DModel, or UNet2DConditionModel for text and vector conditions), sized to the columns.
    private NoisePredictorOptions NetworkFor(IDataView input, ImageColumn column, ConditionColumn? condition)
    {
        var o = _options;
        NoisePredictorOptions? network = o.StartFrom is { } start ? StartingNetwork(start, column, condition) : null;
        try
        {
            network ??= o.Network is { } chosen
                ? chosen with { ImageChannels = column.Channels, ImageSize = column.Size, Condition = condition?.Options ?? new() }
                : DiffusersUNetShapes.Like(new UNetOptions
            {
                ImageChannels = column.Channels,
                ImageSize = column.Size,
                BaseChannels = o.BaseChannels,
                ChannelMultipliers = o.ChannelMultipliers,
                ResidualBlocksPerLevel = o.ResidualBlocksPerLevel,
                AttentionResolutions = o.AttentionResolutions ?? [column.Size >> (o.ChannelMultipliers.Length - 1)],
                AttentionHeads = o.AttentionHeads,
                NormGroups = o.NormGroups,
                Dropout = o.Dropout,
                Condition = condition?.Options ?? new(),
            });
            network.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentOutOfRangeException(nameof(input), $"The noise predictor cannot be built for column '{column.Name}'{(condition is null ? "" : $" and condition column '{o.ConditionColumnName}'")}: {e.Message}");
        }
        return network;
    }

    // Continues from the checkpoint when there is one to resume, or starts from the given model's weights.
    private void StartOrResume(DiffusionTrainer trainer, IChannel ch)
    {
        var o = _options;
        if (o.CheckpointPath is not null && o.ResumeFromCheckpoint && File.Exists(o.CheckpointPath))
        {
            trainer.LoadState(o.CheckpointPath);
            ch.Info($"Resumed from checkpoint '{o.CheckpointPath}' at step {trainer.StepsDone}.");
        }
        else if (o.Lora is { } lora)
        {
            ch.Info($"Training rank-{lora.Rank} LoRA adapters on the given model's network, whose weights stay frozen.");
        }
        else if (o.StartFrom is { } pretrained)
        {
            trainer.InitializeWeights(pretrained.Network);
            ch.Info($"Starting from the given model's weights ({NoisePredictors.NameOf(pretrained.NetworkOptions.GetType())}, {pretrained.TrainingSteps} steps trained before).");
        }
    }

    // Runs the remaining steps, from a stream of rows or from memory; a cancelled or failed run keeps its training state.
    private long Train(IDataView input, ImageColumn column, ConditionColumn? condition, DiffusionTrainer trainer, bool streaming, int remaining,
        Action<TrainingProgress> report, Action<DiffusionTrainer> afterStep, StrongBox<long> skipped, IChannel ch)
    {
        var o = _options;
        return KeepingState(trainer, ch, () =>
        {
            if (streaming)
            {
                return TrainStreamed(input, column, condition, trainer, remaining, report, afterStep, ch);
            }
            else
            {
                if (trainer.StreamPosition is not null)
                    ch.Warning("The checkpoint was written by streamed training; reading the data into memory starts a new data order.");
                var (images, conditions, bad) = ReadImages(input, column, condition, o.SkipBadRows, ch);
                using var _ = images;
                using var __ = conditions;
                skipped.Value = bad;
                ch.Info($"Read {images.shape[0]} training images{(bad > 0 ? $" ({bad} unreadable rows skipped)" : "")}.");
                trainer.Train(images, remaining, report, Math.Max(1, o.ReportEvery), o.CancellationToken, afterStep, conditions);
                return bad;
            }
        });
    }

    // Runs the training; a cancelled run or an unreadable row keeps the training state, for pixel-space and Stable Diffusion training alike.
    private long KeepingState(DiffusionTrainer trainer, IChannel ch, Func<long> train)
    {
        var o = _options;
        try
        {
            return train();
        }
        catch (OperationCanceledException)
        {
            if (o.CheckpointPath is not null)
            {
                trainer.SaveState(o.CheckpointPath);
                ch.Info($"Training cancelled at step {trainer.StepsDone}; state saved to '{o.CheckpointPath}'.");
            }
            throw;
        }
        catch (BadRowException e)
        {
            // The row failed before its step: the trainer is consistent, so its state is worth keeping.
            string kept = "";
            string? state = null;
            if (o.CheckpointPath is not null && trainer.StepsDone > 0)
            {
                trainer.SaveState(o.CheckpointPath);
                state = o.CheckpointPath;
                kept = $" The training state at step {trainer.StepsDone} is saved in '{o.CheckpointPath}'.";
            }
            throw new UnreadableTrainingRowException(e.Row, trainer.StepsDone, state, $"Training stopped at step {trainer.StepsDone}: {e.Message}{kept}", e);
        }
    }

    // The network of the model training starts from, checked against the columns it will be trained on.
    private NoisePredictorOptions StartingNetwork(DiffusionModel start, ImageColumn column, ConditionColumn? condition)
    {
        if (start.Network is Networks.Legacy.UNetNoisePredictor first)
            throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.StartFrom), $"StartFrom's network is the library's first UNet, which no longer trains: {Networks.Legacy.FirstUNetFiles.WhyNoDiffusersForm(first.Options)}. The model still generates; train a new model with the default network instead.");
        var n = start.NetworkOptions;
        if (n.ImageChannels != column.Channels || n.ImageSize != column.Size)
            throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.StartFrom), $"StartFrom's network takes {n.ImageChannels}×{n.ImageSize}×{n.ImageSize} images, but column '{column.Name}' gives {column.Channels}×{column.Size}×{column.Size}; set ImageChannels and resize the images to match.");
        var given = condition?.Options ?? new ConditioningOptions();
        var kind = n.Condition.Kind;
        bool fits = kind == given.Kind && kind switch
        {
            ConditionKind.Class => n.Condition.ClassCount == given.ClassCount,
            ConditionKind.Vector => n.Condition.VectorSize == given.VectorSize,
            ConditionKind.Text => n.Condition.VocabularySize == given.VocabularySize,
            _ => true,
        };
        if (!fits)
            throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.StartFrom), kind == ConditionKind.None
                ? $"StartFrom's network is unconditional, but condition column '{condition!.Name}' was given."
                : $"StartFrom's network is conditioned on {kind} ({n.Condition.ClassCount} classes, vector size {n.Condition.VectorSize}, vocabulary {n.Condition.VocabularySize}); the condition column gives {(condition is null ? "none" : $"{given.Kind} ({given.ClassCount} classes, vector size {given.VectorSize}, vocabulary {given.VocabularySize})")}.");
        return n;
    }

    // Streams batches through a shuffle buffer on a background thread; returns the number of rows skipped as unreadable.
    private long TrainStreamed(IDataView input, ImageColumn column, ConditionColumn? condition, DiffusionTrainer trainer, int steps,
        Action<TrainingProgress> report, Action<DiffusionTrainer> afterStep, IChannel ch)
    {
        var o = _options;
        if (steps == 0) return trainer.StreamPosition?.SkippedRows ?? 0;   // nothing to train: read nothing
        int bufferRows = o.ShuffleBufferSize ?? (int)Math.Clamp(ShuffleBufferBytes / (column.Length * sizeof(float)), 4L * o.BatchSize, int.MaxValue);
        // The stream's own generator, seeded from the run's seed (the trainer's generator stays for noise and timesteps).
        var start = trainer.StreamPosition ?? StreamPosition.Start(trainer.Options.Seed!.Value ^ 0x5DEECE66DL);
        if (steps > 0 && trainer.StepsDone > 0 && trainer.StreamPosition is null)
            ch.Warning("The checkpoint was written by in-memory training; streaming starts a new data order.");
        var stream = new ShuffledRowStream(input, column, condition, o.BatchSize, bufferRows, o.SkipBadRows, start);
        using var prefetch = new BatchPrefetcher(stream, PrefetchBatches);
        var shape = new long[] { o.BatchSize, column.Channels, column.Size, column.Size };
        var conditionOptions = trainer.Network.Options.Condition;
        float[]? previous = null;
        trainer.TrainBatches(() =>
        {
            // The tensor may wrap the batch's array without copying it, so an array goes back to the producer only when
            // the next batch is asked for, after the step on it (and its dispose scope) has ended.
            if (previous is not null) prefetch.Return(previous);
            var batch = prefetch.Take();
            previous = batch.Pixels;
            var images = tensor(batch.Pixels, shape);
            var conditions = condition?.ToBatch(batch.Conditions!);
            conditions?.Validate(conditionOptions);
            return new DiffusionTrainer.StepBatch(images, conditions, batch.Position);
        }, steps, report, Math.Max(1, o.ReportEvery), o.CancellationToken, afterStep);
        return trainer.StreamPosition?.SkippedRows ?? 0;
    }

    private (Tensor Images, ConditionBatch? Conditions, long Skipped) ReadImages(IDataView input, ImageColumn column, ConditionColumn? condition, bool skipBadRows, IChannel ch)
    {
        var rows = new List<float[]>();
        var conditionRows = new List<object>();
        long skipped = 0;
        using (var reader = new TrainingRowReader(input, column, condition))
        {
            while (reader.MoveNext())
            {
                if ((reader.Row & 255) == 0) _host.CheckAlive();
                var pixels = new float[column.Length];
                var error = reader.TryRead(pixels, out var value);
                if (error is not null)
                {
                    if (!skipBadRows) throw error;
                    if (skipped++ < 10) ch.Warning($"Skipping: {error.Message}");
                    continue;
                }
                rows.Add(pixels);
                if (condition is not null) conditionRows.Add(value!);
            }
        }
        if (rows.Count == 0)
            throw new InvalidOperationException(skipped > 0
                ? $"None of the {skipped} training rows in image column '{column.Name}' could be read."
                : $"The training data has no rows in image column '{column.Name}'.");
        var flat = new float[rows.Count * column.Length];
        for (int i = 0; i < rows.Count; i++) rows[i].CopyTo(flat, i * column.Length);
        return (tensor(flat, [rows.Count, column.Channels, column.Size, column.Size]), condition?.ToBatch(conditionRows), skipped);
    }
}
