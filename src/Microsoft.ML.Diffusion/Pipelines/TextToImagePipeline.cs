using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// Text-to-image with a latent model (Stable Diffusion, as diffusers' StableDiffusionPipeline): the prompts and negative
/// prompts through the text encoder, seeded noise in the autoencoder's latent space, the sampler guided by
/// ε = ε_neg + w (ε_prompt − ε_neg), and the latents decoded to images.
/// </summary>
internal static class TextToImagePipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, IReadOnlyList<string> prompts, IReadOnlyList<string>? negativePrompts,
        IReadOnlyList<long> seeds, Action<int, int>? onStep, CancellationToken cancellationToken, Action<string>? onWarning)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(seeds);
        options.Validate();
        var encoder = model.Prompts ?? throw new ArgumentException("This model takes no prompts; it has no text encoder.", nameof(model));
        var vae = model.Autoencoder ?? throw new ArgumentException("This model has no autoencoder; prompt models here are latent (Stable Diffusion).", nameof(model));
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        if (prompts.Count != seeds.Count) throw new ArgumentException($"There are {prompts.Count} prompts for {seeds.Count} seeds.", nameof(prompts));
        if (negativePrompts is not null && negativePrompts.Count != seeds.Count)
            throw new ArgumentException($"There are {negativePrompts.Count} negative prompts for {seeds.Count} seeds.", nameof(negativePrompts));
        var (height, width) = LatentSize.Of(model, options);
        LatentSize.CheckMemory(model, height, width, Math.Min(options.ForwardBatchSize, 2 * seeds.Count));

        using var scope = NewDisposeScope();
        using var states = ConditionBatch.PromptStates(encoder.Encode(prompts, model.Device, onWarning));
        using var negative = options.GuidanceScale == 1.0 ? null
            : ConditionBatch.PromptStates(encoder.Encode(negativePrompts ?? Enumerable.Repeat("", seeds.Count).ToArray(), model.Device, onWarning));
        using var noise = NoiseSource.PerSample(seeds);
        var latents = noise.Next([seeds.Count, model.NetworkOptions.ImageChannels, height / vae.Config.DownscaleFactor, width / vae.Config.DownscaleFactor], model.Device);
        return FromStates(model, options, states, negative, latents, noise, onStep, cancellationToken).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The denoising loop and decoding from given prompt states and starting latents (standard normal, before the
    /// sampler's initial noise scale): images (N, 3, H, W) in [−1, 1].
    /// </summary>
    public static Tensor FromStates(DiffusionModel model, GenerationOptions options, ConditionBatch states, ConditionBatch? negative, Tensor latents,
        NoiseSource? noise, Action<int, int>? onStep, CancellationToken cancellationToken)
    {
        var vae = model.Autoencoder!;
        // Latents are not images in [−1, 1]: x̂₀ is never clipped, as no Stable Diffusion scheduler does.
        var latentOptions = options with { SamplerOptions = options.SamplerOptions with { Clipping = X0Clipping.None } };
        using var sampler = SamplerFactory.Create(model, latentOptions);
        using var scope = NewDisposeScope();
        var denoiser = Guided(model, states, negative, options.GuidanceScale, options.ForwardBatchSize);
        var final = SamplingLoop.Run(denoiser, sampler, latents, PipelineSteps.Steps(model, options), noise, onStep, cancellationToken);
        return Decode(model, final).MoveToOuterDisposeScope();
    }

    /// <summary>Latents (N, C, h, w) to images in [−1, 1], one at a time (the decoder's activations at full size are large).</summary>
    public static Tensor Decode(DiffusionModel model, Tensor latents)
    {
        var vae = model.Autoencoder!;
        using var scope = NewDisposeScope();
        using var noGrad = inference_mode();
        var images = new List<Tensor>();
        for (long i = 0; i < latents.shape[0]; i++)
            images.Add(vae.Decode(latents.narrow(0, i, 1) / vae.ScalingFactor).clamp(-1.0, 1.0));
        return cat(images, 0).MoveToOuterDisposeScope();
    }

    // Classifier-free guidance against the negative prompt's states, both halves in one forward of twice the batch.
    internal static Denoiser Guided(DiffusionModel model, ConditionBatch states, ConditionBatch? negative, double guidanceScale, int forwardBatchSize)
    {
        if (negative is null) return (x, t) => model.ForwardInChunks(x, t, states, forwardBatchSize);
        return (x, t) =>
        {
            using var scope = NewDisposeScope();
            using var both = negative.Concat(states);
            var output = model.ForwardInChunks(cat([x, x], 0), cat([t, t], 0), both, forwardBatchSize);
            var halves = output.chunk(2, 0);
            return (halves[0] + guidanceScale * (halves[1] - halves[0])).MoveToOuterDisposeScope();
        };
    }
}
