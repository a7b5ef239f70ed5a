using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>The self-describing part of a checkpoint: everything needed to rebuild the model around its weights.</summary>
internal sealed record CheckpointHeader
{
    /// <summary>The noise predictor's configuration, with the name of its registered kind.</summary>
    public required NoisePredictorOptions Network { get; init; }

    /// <summary>The noise schedule the model was trained with.</summary>
    public required NoiseScheduleOptions Schedule { get; init; }

    /// <summary>What the network predicts.</summary>
    public PredictionType Prediction { get; init; }

    /// <summary>The file's format version (set when a file is read; not part of the JSON header).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int FormatVersion { get; init; } = DiffusionCheckpoint.FormatVersion;

    /// <summary>Optimiser steps the weights have seen.</summary>
    public long TrainingSteps { get; init; }

    /// <summary>
    /// The <c>scheduler_config.json</c> of the diffusers folder the model was imported from, kept as written so that an
    /// export gives the same scheduler class and settings back; null for models trained here.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? DiffusersScheduler { get; init; }
}
