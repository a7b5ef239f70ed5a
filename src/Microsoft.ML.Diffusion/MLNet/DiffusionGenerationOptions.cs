using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Options for <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>:
/// the stage's columns, seeding and batching, and how it samples (<see cref="Generation"/>).
/// </summary>
/// <example><code>
/// var options = new DiffusionGenerationOptions { SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 50 } };
/// </code></example>
public sealed record DiffusionGenerationOptions : DiffusionStageOptions
{
    /// <summary>Creates the options with the generated column named "GeneratedImage".</summary>
    public DiffusionGenerationOptions() : base("GeneratedImage") { }

    /// <summary>
    /// For models that take prompts (Stable Diffusion): a text column of what each row's image should steer away from;
    /// null uses the empty prompt. The prompts themselves are <see cref="DiffusionStageOptions.ConditionColumnName"/>.
    /// </summary>
    public string? NegativePromptColumnName { get; set; }

    internal override string? NegativePrompts => NegativePromptColumnName;

    /// <summary>Sampler, steps, its settings, guidance, and for latent models the image size.</summary>
    public GenerationOptions Generation { get; set; } = new();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        (Generation ?? throw new ArgumentNullException(nameof(Generation))).Validate();
    }

    internal override DiffusionStageOptions Snapshot() => this with { Generation = Generation with { } };
}
