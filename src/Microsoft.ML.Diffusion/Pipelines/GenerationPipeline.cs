using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>Generation (DDPM's Algorithm 2 with any sampler): pure noise of each seed, denoised in one sampler run over the batch.</summary>
internal static class GenerationPipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, IReadOnlyList<long> seeds, Action<int, int>? onStep,
        CancellationToken cancellationToken, ConditionBatch? condition)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        if (model.TakesPrompts)
        {
            if (condition is not null) throw new ArgumentException("This model takes prompts; pass them as text, not as a condition batch.", nameof(condition));
            return TextToImagePipeline.Run(model, options, Enumerable.Repeat("", seeds.Count).ToArray(), null, seeds, onStep, cancellationToken, null);
        }
        if (options.Width is { } w && w != model.ImageShape[2] || options.Height is { } h && h != model.ImageShape[1])
            throw new ArgumentException($"This model generates {model.ImageShape[2]}×{model.ImageShape[1]} images; Width and Height apply to latent models only.", nameof(options));
        PipelineSteps.CheckCondition(model, condition, seeds.Count);
        using var noise = NoiseSource.PerSample(seeds);
        using var sampler = SamplerFactory.Create(model, options);
        using var scope = NewDisposeScope();
        var x = noise.Next([seeds.Count, .. model.ImageShape], model.Device);
        using var onDevice = condition?.To(model.Device);
        var denoiser = PipelineSteps.DenoiserFor(model, options.GuidanceScale, options.ForwardBatchSize, onDevice);
        return PipelineSteps.SampleClamped(denoiser, sampler, x, PipelineSteps.Steps(model, options), noise, onStep, cancellationToken);
    }
}
