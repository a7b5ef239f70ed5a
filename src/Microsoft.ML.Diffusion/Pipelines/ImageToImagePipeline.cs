using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>Image-to-image (SDEdit, Meng et al. 2022): the images noised by the forward process part of the way, then denoised from there.</summary>
internal static class ImageToImagePipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, Tensor images, double strength, IReadOnlyList<long> seeds,
        Action<int, int>? onStep, CancellationToken cancellationToken, ConditionBatch? condition)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(seeds);
        if (model.IsLatent) return Latent(model, options, images, strength, seeds, onStep, cancellationToken, condition);
        if (!(strength >= 0 && strength <= 1))
            throw new ArgumentOutOfRangeException(nameof(strength), strength, "The strength must lie in [0, 1] (0 keeps the image, 1 redraws it from pure noise).");
        PipelineSteps.CheckImages(model, images, seeds);
        options.Validate();
        int steps = PipelineSteps.Steps(model, options);
        int redrawn = Math.Min((int)Math.Floor(steps * strength), steps);
        if (redrawn == 0) return images.to(float32).to(model.Device).clone();
        if (redrawn == steps) return GenerationPipeline.Run(model, options, seeds, onStep, cancellationToken, condition);
        PipelineSteps.CheckCondition(model, condition, seeds.Count);

        using var noise = NoiseSource.PerSample(seeds);
        using var sampler = SamplerFactory.Create(model, options);
        using var scope = NewDisposeScope();
        sampler.SetTimesteps(steps);
        int start = (steps - redrawn) * sampler.Order;   // diffusers' timesteps[t_start * scheduler.order:]
        double t = sampler.Timesteps[start];
        // x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, with ᾱ at a fractional (Karras) timestep from its interpolated σ.
        double alphaCumprod = t == Math.Floor(t) ? model.Schedule.AlphasCumprod[(int)t] : NoiseLevels.AlphaCumprodOf(NoiseLevels.SigmaAt(model.Schedule, t));
        var epsilon = noise.Next([seeds.Count, .. model.ImageShape], model.Device);
        var x = Math.Sqrt(alphaCumprod) * images.to(float32).to(model.Device) + Math.Sqrt(1 - alphaCumprod) * epsilon;
        using var onDevice = condition?.To(model.Device);
        var denoiser = PipelineSteps.DenoiserFor(model, options.GuidanceScale, options.ForwardBatchSize, onDevice);
        return PipelineSteps.SampleClamped(denoiser, sampler, x, steps, noise, onStep, cancellationToken, start);
    }

    // A latent model edits through its autoencoder, unprompted here (ImageToImageWithPrompts takes prompts).
    private static Tensor Latent(DiffusionModel model, GenerationOptions options, Tensor images, double strength, IReadOnlyList<long> seeds,
        Action<int, int>? onStep, CancellationToken cancellationToken, ConditionBatch? condition)
    {
        if (condition is not null)
            throw new ArgumentException("This model takes prompts, not a condition batch; pass them to ImageToImageWithPrompts.", nameof(condition));
        return LatentImageToImagePipeline.Run(model, options, images, strength, Enumerable.Repeat("", seeds.Count).ToArray(), null, seeds, onStep, cancellationToken, null);
    }
}
