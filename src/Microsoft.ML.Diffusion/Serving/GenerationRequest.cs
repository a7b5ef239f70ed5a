using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Serving;

/// <summary>One image to generate: its seed, the sampler settings, and what it is conditioned on.</summary>
public sealed record GenerationRequest
{
    /// <summary>The seed of the image's starting noise and of a stochastic sampler's step noise.</summary>
    public long Seed { get; init; }

    /// <summary>Sampler, steps, guidance and (for latent models) size. <see cref="GenerationOptions.ForwardBatchSize"/> does not apply: the service sets the batches.</summary>
    public GenerationOptions Options { get; init; } = new();

    /// <summary>
    /// A condition batch of one row for a conditional model (a class, a vector …); null samples unconditionally. The
    /// service copies it when the request is submitted, so the caller may dispose it afterwards.
    /// </summary>
    public ConditionBatch? Condition { get; init; }

    /// <summary>The prompt, for a model that takes prompts (<see cref="Models.DiffusionModel.TakesPrompts"/>); null is the empty prompt.</summary>
    public string? Prompt { get; init; }

    /// <summary>What to steer away from, for a model that takes prompts; null is the empty prompt.</summary>
    public string? NegativePrompt { get; init; }
}
