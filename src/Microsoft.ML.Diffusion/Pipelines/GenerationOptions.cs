using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// How images are sampled: which sampler, how many steps, its settings, and guidance. The settings of
/// <see cref="DiffusionPipelines.Generate"/> and <see cref="DiffusionPipelines.ImageToImage"/>, and the sampling part of
/// the ML.NET generation stages' options.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>The sampler: a <see cref="SamplerName"/>: a built-in one or any name registered with <see cref="DiffusionSamplers"/>.</summary>
    public SamplerName Sampler { get; set; } = SamplerName.DpmSolverPlusPlus;

    /// <summary>Denoising steps; null uses the sampler's usual count (<see cref="DiffusionSamplers.DefaultSteps"/>).</summary>
    public int? Steps { get; set; }

    /// <summary>
    /// The sampler's settings (spacing, η, clipping …). Their <see cref="SamplerOptions.Prediction"/> is the model's: the
    /// pipelines set it from the model they sample.
    /// </summary>
    public SamplerOptions SamplerOptions { get; set; } = new();

    /// <summary>
    /// Classifier-free guidance scale w for conditional models: ε = ε_uncond + w (ε_cond − ε_uncond).
    /// 1 uses the conditional prediction alone, 0 ignores the condition, larger values (3–5) follow it more
    /// closely. Both passes run as one forward of twice the batch.
    /// </summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Image width in pixels for latent models (a multiple of 8); null uses the model's own size. Pixel models sample at their size.</summary>
    public int? Width { get; set; }

    /// <summary>Image height in pixels for latent models (a multiple of 8); null uses the model's own size.</summary>
    public int? Height { get; set; }

    /// <summary>
    /// Most samples per network forward pass; larger batches (and the doubled batch of guidance) are split.
    /// Splitting changes only float rounding, and speed (see <see cref="DiffusionModel.DefaultForwardBatchSize"/>).
    /// </summary>
    public int ForwardBatchSize { get; set; } = DiffusionModel.DefaultForwardBatchSize;

    /// <summary>Checks the values and throws naming the bad one; the sampler's settings are checked by <see cref="SamplerOptions.Validate"/>.</summary>
    public void Validate()
    {
        if (Steps is < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be positive.");
        if (Width is < 1) throw new ArgumentOutOfRangeException(nameof(Width), Width, "Width must be positive.");
        if (Height is < 1) throw new ArgumentOutOfRangeException(nameof(Height), Height, "Height must be positive.");
        Guidance.Validate(GuidanceScale, ForwardBatchSize);
        if (!DiffusionSamplers.IsRegistered(Sampler)) throw new UnknownSamplerException(Sampler.Value);
        if (SamplerOptions is null) throw new ArgumentNullException(nameof(SamplerOptions));
        SamplerOptions.Validate();
    }

    /// <summary>The sampler's settings for a model that predicts <paramref name="prediction"/>.</summary>
    internal SamplerOptions SamplerOptionsFor(PredictionType prediction) => SamplerOptions with { Prediction = prediction };

    /// <summary>
    /// The options that reproduce a diffusers scheduler: its <c>scheduler_config.json</c> in <paramref name="folder"/>, in
    /// its <c>scheduler</c> subfolder, or given as the file. Steps stay unset (the sampler's usual count); a scheduler,
    /// field or value the library does not reproduce is a <see cref="Checkpoints.CheckpointFormatException"/> that names it.
    /// </summary>
    public static GenerationOptions FromDiffusers(string folder)
    {
        var (_, mapping) = Interchange.Diffusers.DiffusersSchedulerConfig.ReadFolder(folder);
        return new GenerationOptions { Sampler = mapping.Sampler, SamplerOptions = mapping.Options };
    }
}
