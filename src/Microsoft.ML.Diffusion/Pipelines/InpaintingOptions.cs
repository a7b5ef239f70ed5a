using Microsoft.ML.Diffusion.Models;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// Settings of RePaint inpainting (Lugmayr et al. 2022) for <see cref="DiffusionPipelines.Inpaint"/>: the denoising steps,
/// and how often the sampler jumps back (re-noising the harmonised image by the forward process) to resample, which
/// lets the redrawn region and the kept one agree. The defaults are diffusers' RePaintPipeline's: 250 steps, jumps of 10
/// steps, 10 samples per jump, η = 0. The network is evaluated about Steps × (1 + (Resamplings − 1) × JumpLength / JumpLength)
/// times (2,500 with the defaults); fewer steps and resamplings trade agreement for speed.
/// </summary>
public sealed record InpaintingOptions
{
    /// <summary>Denoising steps on the schedule (T / Steps training steps apart).</summary>
    public int Steps { get; set; } = 250;

    /// <summary>Steps the sampler goes back up at each jump (RePaint's j).</summary>
    public int JumpLength { get; set; } = 10;

    /// <summary>Times each jumped-over stretch is sampled (RePaint's r); 1 never jumps back (plain "paste the known region each step").</summary>
    public int Resamplings { get; set; } = 10;

    /// <summary>The step's noise: 0 is DDIM-like, 1 matches DDPM's ancestral variance (the paper's).</summary>
    public double Eta { get; set; }

    /// <summary>Classifier-free guidance scale for conditional models (see <see cref="GenerationOptions.GuidanceScale"/>).</summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Most samples per network forward pass.</summary>
    public int ForwardBatchSize { get; set; } = DiffusionModel.DefaultForwardBatchSize;

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (Steps < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be positive.");
        if (JumpLength < 1) throw new ArgumentOutOfRangeException(nameof(JumpLength), JumpLength, "JumpLength must be positive.");
        if (Resamplings < 1) throw new ArgumentOutOfRangeException(nameof(Resamplings), Resamplings, "Resamplings must be at least 1.");
        if (!(Eta >= 0 && Eta <= 1)) throw new ArgumentOutOfRangeException(nameof(Eta), Eta, "η must lie in [0, 1].");
        Guidance.Validate(GuidanceScale, ForwardBatchSize);
    }
}
