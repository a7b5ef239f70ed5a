using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// How images are sampled: the settings of <see cref="DiffusionPipelines.Generate"/>, and the sampling half of the
/// ML.NET stage's options (<c>DiffusionGenerationOptions</c> derives from it).
/// </summary>
public record GenerationOptions
{
    /// <summary>The sampler: a <see cref="SamplerName"/>: a built-in one or any name registered with <see cref="DiffusionSamplers"/>.</summary>
    public SamplerName Sampler { get; set; } = SamplerName.DpmSolverPlusPlus;

    /// <summary>Denoising steps; null uses the sampler's usual count (<see cref="DiffusionSamplers.DefaultSteps"/>).</summary>
    public int? Steps { get; set; }

    /// <summary>How the timesteps are chosen; null uses the sampler's default.</summary>
    public TimestepSpacing? Spacing { get; set; }

    /// <summary>Added to every timestep with leading spacing (diffusers' <c>steps_offset</c>).</summary>
    public int StepsOffset { get; set; }

    /// <summary>DDIM's η (0 = deterministic).</summary>
    public double Eta { get; set; }

    /// <summary>How x̂₀ is kept in range at each step.</summary>
    public X0Clipping Clipping { get; set; } = X0Clipping.Clip;

    /// <summary>Cap for clipping and dynamic thresholding of x̂₀.</summary>
    public double ClipRange { get; set; } = 1.0;

    /// <summary>The |x̂₀| percentile that sets dynamic thresholding's bound (Imagen's 0.995).</summary>
    public double ThresholdPercentile { get; set; } = 0.995;

    /// <summary>DDIM only: recompute ε̂ from the clipped x̂₀ (diffusers' <c>use_clipped_model_output</c>); false keeps the model's ε̂, as diffusers does.</summary>
    public bool UseClippedModelOutput { get; set; }

    /// <summary>DDPM only: use β_t as the reverse variance ("fixed large") instead of β̃_t ("fixed small").</summary>
    public bool UseLargeVariance { get; set; }

    /// <summary>DDIM only: the last step lands on ᾱ = 1 (true) or on ᾱ of the first training step (diffusers' <c>set_alpha_to_one</c>).</summary>
    public bool SetAlphaToOne { get; set; } = true;

    /// <summary>
    /// Classifier-free guidance scale w for conditional models: ε = ε_uncond + w (ε_cond − ε_uncond).
    /// 1 uses the conditional prediction alone, 0 ignores the condition, larger values (3–5) follow it more
    /// closely. Both passes run as one forward of twice the batch.
    /// </summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>
    /// Most samples per network forward pass; larger batches (and the doubled batch of guidance) are split.
    /// Splitting changes only float rounding, and speed (see <see cref="DiffusionModel.DefaultForwardBatchSize"/>).
    /// </summary>
    public int ForwardBatchSize { get; set; } = DiffusionModel.DefaultForwardBatchSize;

    /// <summary>Checks the values and throws naming the bad one; the sampler's settings are checked by <see cref="SamplerOptions.Validate"/>.</summary>
    public virtual void Validate()
    {
        if (Steps is < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be positive.");
        if (!(GuidanceScale >= 0) || double.IsInfinity(GuidanceScale)) throw new ArgumentOutOfRangeException(nameof(GuidanceScale), GuidanceScale, "GuidanceScale must be a non-negative number.");
        if (!DiffusionSamplers.IsRegistered(Sampler)) throw new UnknownSamplerException(Sampler.Value);
        if (ForwardBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(ForwardBatchSize), ForwardBatchSize, "ForwardBatchSize must be positive.");
        ToSamplerOptions(PredictionType.Epsilon).Validate();
    }

    /// <summary>The sampler's settings for a model that predicts <paramref name="prediction"/>.</summary>
    internal SamplerOptions ToSamplerOptions(PredictionType prediction) => new()
    {
        Prediction = prediction,
        Eta = Eta,
        Clipping = Clipping,
        ClipRange = ClipRange,
        ThresholdPercentile = ThresholdPercentile,
        UseClippedModelOutput = UseClippedModelOutput,
        UseLargeVariance = UseLargeVariance,
        SetAlphaToOne = SetAlphaToOne,
        Spacing = Spacing,
        StepsOffset = StepsOffset,
    };

    /// <summary>
    /// The options that reproduce a diffusers scheduler: its <c>scheduler_config.json</c> (DDPMScheduler, DDIMScheduler
    /// or DPMSolverMultistepScheduler) in <paramref name="folder"/>, in its <c>scheduler</c> subfolder, or given as the file.
    /// Steps stay unset (the sampler's usual count); a scheduler, field or value the library does not reproduce is a
    /// <see cref="Checkpoints.CheckpointFormatException"/> that names it.
    /// </summary>
    public static GenerationOptions FromDiffusers(string folder)
    {
        var (_, mapping) = Interchange.Diffusers.DiffusersSchedulerConfig.ReadFolder(folder);
        var o = mapping.Options;
        return new GenerationOptions
        {
            Sampler = mapping.Sampler,
            Spacing = o.Spacing,
            StepsOffset = o.StepsOffset,
            Eta = o.Eta,
            Clipping = o.Clipping,
            ClipRange = o.ClipRange,
            UseClippedModelOutput = o.UseClippedModelOutput,
            UseLargeVariance = o.UseLargeVariance,
            SetAlphaToOne = o.SetAlphaToOne,
        };
    }
}
