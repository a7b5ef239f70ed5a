using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>How <see cref="DiffusionModel.Generate"/> samples.</summary>
public sealed record GenerationOptions
{
    /// <summary>The sampler: a <see cref="SamplerKind"/> or any name registered with <see cref="DiffusionSamplers"/>.</summary>
    public SamplerName Sampler { get; init; } = SamplerKind.DpmSolverPlusPlus;

    /// <summary>Denoising steps; null uses the sampler's usual count (<see cref="DiffusionSamplers.DefaultSteps"/>).</summary>
    public int? Steps { get; init; }

    /// <summary>How the timesteps are chosen; null uses the sampler's default.</summary>
    public TimestepSpacing? Spacing { get; init; }

    /// <summary>Added to every timestep with leading spacing (diffusers' <c>steps_offset</c>).</summary>
    public int StepsOffset { get; init; }

    /// <summary>DDIM's η (0 = deterministic).</summary>
    public double Eta { get; init; }

    /// <summary>How x̂₀ is kept in range at each step.</summary>
    public X0Clipping Clipping { get; init; } = X0Clipping.Clip;

    /// <summary>Cap for clipping and dynamic thresholding.</summary>
    public double ClipRange { get; init; } = 1.0;

    /// <summary>
    /// Classifier-free guidance scale w for conditional models: ε = ε_uncond + w (ε_cond − ε_uncond).
    /// 1 uses the conditional prediction alone, 0 ignores the condition, larger values follow it more
    /// closely. Both passes run as one forward of twice the batch.
    /// </summary>
    public double GuidanceScale { get; init; } = 1.0;

    /// <summary>
    /// Most samples per network forward pass; larger batches (and the doubled batch of guidance) are split.
    /// Splitting changes only float rounding, and speed (see <see cref="DiffusionModel.DefaultForwardBatchSize"/>).
    /// </summary>
    public int ForwardBatchSize { get; init; } = DiffusionModel.DefaultForwardBatchSize;
}
