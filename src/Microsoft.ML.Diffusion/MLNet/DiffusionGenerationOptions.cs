using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>Options for <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>.</summary>
public sealed class DiffusionGenerationOptions
{
    /// <summary>Name of the generated column.</summary>
    public string OutputColumnName { get; set; } = "GeneratedImage";

    /// <summary>
    /// Column of per-row seeds (any integer type, or Single/Double holding whole numbers); null seeds
    /// row i with <see cref="Seed"/> + i. A row's image depends only on its seed.
    /// </summary>
    public string? SeedColumnName { get; set; }

    /// <summary>
    /// The condition column for a conditional model (class key or integer, float vector, or token keys,
    /// made by the same stages as at training). Null uses the column the model was trained with.
    /// Setting it for an unconditional model is an error.
    /// </summary>
    public string? ConditionColumnName { get; set; }

    /// <summary>
    /// Classifier-free guidance scale w: ε = ε_uncond + w (ε_cond − ε_uncond). 1 follows the condition
    /// as trained, 0 ignores it, 3–5 follow it more closely.
    /// </summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Base seed for rows when no seed column is given.</summary>
    public long Seed { get; set; }

    /// <summary>The sampler: a <see cref="SamplerKind"/> or any name registered with <see cref="DiffusionSamplers"/>; saved by name.</summary>
    public SamplerName Sampler { get; set; } = SamplerKind.DpmSolverPlusPlus;

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

    /// <summary>Most samples per network forward pass; larger batches (and guidance's doubled batch) are split.</summary>
    public int ForwardBatchSize { get; set; } = Models.DiffusionModel.DefaultForwardBatchSize;

    /// <summary>Image or float-vector output.</summary>
    public GeneratedOutputKind OutputKind { get; set; } = GeneratedOutputKind.Image;

    /// <summary>Rows generated together in one sampler run.</summary>
    public int BatchSize { get; set; } = 64;

    // A snapshot, so changing these options after building a stage does not change it.
    internal DiffusionGenerationOptions Clone() => (DiffusionGenerationOptions)MemberwiseClone();

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(OutputColumnName)) throw new ArgumentException("OutputColumnName must be set.", nameof(OutputColumnName));
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
        if (Steps is < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be positive.");
        if (!(GuidanceScale >= 0) || double.IsInfinity(GuidanceScale)) throw new ArgumentOutOfRangeException(nameof(GuidanceScale), GuidanceScale, "GuidanceScale must be a non-negative number.");
        if (!DiffusionSamplers.IsRegistered(Sampler)) throw new ArgumentException($"No sampler is registered as '{Sampler}'. Registered: {string.Join(", ", DiffusionSamplers.Names)}.", nameof(Sampler));
        if (StepsOffset < 0) throw new ArgumentOutOfRangeException(nameof(StepsOffset), StepsOffset, "StepsOffset must not be negative.");
        if (!(ClipRange > 0)) throw new ArgumentOutOfRangeException(nameof(ClipRange), ClipRange, "ClipRange must be positive.");
        if (ForwardBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(ForwardBatchSize), ForwardBatchSize, "ForwardBatchSize must be positive.");
        if (!(Eta >= 0)) throw new ArgumentOutOfRangeException(nameof(Eta), Eta, "η must be non-negative.");
    }
}
