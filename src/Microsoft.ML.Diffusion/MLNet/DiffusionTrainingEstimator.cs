using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Runtime;
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
public sealed class DiffusionTrainingEstimator : IEstimator<DiffusionTrainingTransformer>
{
    private readonly IHost _host;
    private readonly DiffusionTrainingOptions _options;

    internal DiffusionTrainingEstimator(IHostEnvironment env, DiffusionTrainingOptions options)
    {
        _host = Contracts.CheckRef(env, nameof(env)).Register(nameof(DiffusionTrainingEstimator));
        _options = options?.Snapshot() ?? throw new ArgumentNullException(nameof(options));
        if (options.ImageChannels is not (1 or 3 or 4))
            throw new ArgumentOutOfRangeException(nameof(options), options.ImageChannels, "ImageChannels must be 1, 3 or 4.");
        if (options.TrainingSteps < 0) throw new ArgumentOutOfRangeException(nameof(options), options.TrainingSteps, "TrainingSteps must not be negative.");
        if (options.CheckpointEvery < 1) throw new ArgumentOutOfRangeException(nameof(options), options.CheckpointEvery, "CheckpointEvery must be positive.");
        if (string.IsNullOrWhiteSpace(options.ImageColumnName)) throw new ArgumentException("ImageColumnName must be set.", nameof(options));
    }

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
        var column = ImageColumn.Resolve(input.Schema, o.ImageColumnName, o.ImageChannels, o.ImageSize, o.PixelRange);
        var condition = o.ConditionColumnName is null ? null
            : ConditionColumn.ForTraining(input.Schema, o.ConditionColumnName, o.ClassCount, o.MaxTokens, o.TextWidth, o.TextLayers, o.TextHeads);
        var device = DiffusionDevice.Resolve(o.Device);

        using var ch = _host.Start("Training");
        var (images, conditions) = ReadImages(input, column, condition);
        using var _ = images;
        using var __ = conditions;
        ch.Info($"Training a diffusion model on {images.shape[0]} images of {column.Channels}×{column.Size}×{column.Size} from column '{column.Name}' on {device}.");

        var network = o.Network is { } chosen
            ? chosen with { ImageChannels = column.Channels, ImageSize = column.Size, Condition = condition?.Options ?? new() }
            : new UNetOptions
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
        };
        try
        {
            network.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentOutOfRangeException(nameof(input), $"The noise predictor cannot be built for column '{column.Name}'{(condition is null ? "" : $" and condition column '{o.ConditionColumnName}'")}: {e.Message}");
        }
        var schedule = o.Schedule ?? throw new ArgumentNullException(nameof(input), "DiffusionTrainingOptions.Schedule must be set.");
        // The hyper-parameters as given (this stage's own settings ride along unused), seeded from the MLContext when unset.
        // A decaying learning rate reaches 0 at the last training step unless told otherwise.
        var trainerOptions = o with { Seed = o.Seed ?? _host.Rand.Next(), DecaySteps = o.DecaySteps ?? Math.Max(1, o.TrainingSteps) };

        using var trainer = new DiffusionTrainer(network, schedule, trainerOptions, device);
        if (o.CheckpointPath is not null && o.ResumeFromCheckpoint && File.Exists(o.CheckpointPath))
        {
            trainer.LoadState(o.CheckpointPath);
            ch.Info($"Resumed from checkpoint '{o.CheckpointPath}' at step {trainer.StepsDone}.");
        }

        int remaining = (int)Math.Max(0, o.TrainingSteps - trainer.StepsDone);
        try
        {
            trainer.Train(images, remaining,
                progress: p =>
                {
                    ch.Info($"Step {p.Step}/{p.TotalSteps}: loss {p.Loss:F5}, learning rate {p.LearningRate:E2}, {p.StepsPerSecond:F2} steps/s.");
                    o.Progress?.Invoke(p);
                },
                reportEvery: Math.Max(1, o.ReportEvery),
                cancellationToken: o.CancellationToken,
                afterStep: t =>
                {
                    _host.CheckAlive();   // honours MLContext.CancelExecution()
                    if (o.CheckpointPath is not null && t.StepsDone % o.CheckpointEvery == 0)
                        t.SaveState(o.CheckpointPath);
                },
                conditions: conditions);
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
        if (o.CheckpointPath is not null) trainer.SaveState(o.CheckpointPath);
        ch.Info($"Training finished at step {trainer.StepsDone}.");
        return new DiffusionTrainingTransformer(_host, trainer.ToModel(), column.Name, condition?.Name);
    }

    private (Tensor Images, ConditionBatch? Conditions) ReadImages(IDataView input, ImageColumn column, ConditionColumn? condition)
    {
        var rows = new List<float[]>();
        var conditionRows = new List<object>();
        var needed = new List<DataViewSchema.Column> { input.Schema[column.Name] };
        if (condition is not null) needed.Add(input.Schema[condition.Name]);
        using (var cursor = input.GetRowCursor(needed))
        {
            var read = column.CreateReader(cursor);
            var readCondition = condition?.CreateReader(cursor);
            while (cursor.MoveNext())
            {
                if ((rows.Count & 255) == 0) _host.CheckAlive();
                var pixels = new float[column.Length];
                read(pixels);
                rows.Add(pixels);
                if (readCondition is not null) conditionRows.Add(readCondition());
            }
        }
        if (rows.Count == 0)
            throw new InvalidOperationException($"The training data has no rows in image column '{column.Name}'.");
        var flat = new float[rows.Count * column.Length];
        for (int i = 0; i < rows.Count; i++) rows[i].CopyTo(flat, i * column.Length);
        return (tensor(flat, [rows.Count, column.Channels, column.Size, column.Size]), condition?.ToBatch(conditionRows));
    }
}
