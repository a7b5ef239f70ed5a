using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// Image-to-image with a latent model, as diffusers' StableDiffusionImg2ImgPipeline: each image encoded to a sample of
/// the autoencoder's latent distribution (scaled), noised by the forward process to the sampler's step ⌊N·strength⌋ from
/// the end, denoised from there under prompt guidance, and decoded.
/// </summary>
internal static class LatentImageToImagePipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, Tensor images, double strength, IReadOnlyList<string> prompts,
        IReadOnlyList<string>? negativePrompts, IReadOnlyList<long> seeds, Action<int, int>? onStep, CancellationToken cancellationToken, Action<string>? onWarning)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(seeds);
        CheckStrength(strength);
        options.Validate();
        var (encoder, vae) = Components(model);
        CheckPrompts(prompts, negativePrompts, seeds);
        var (height, width) = CheckImages(model, images, seeds);
        LatentSize.CheckMemory(model, height, width, Math.Min(options.ForwardBatchSize, 2 * seeds.Count));
        int steps = PipelineSteps.Steps(model, options);
        if (Redrawn(steps, strength) == 0) return images.to(float32).to(model.Device).clone();

        using var scope = NewDisposeScope();
        using var states = ConditionBatch.PromptStates(encoder.Encode(prompts, model.Device, onWarning));
        using var negative = options.GuidanceScale == 1.0 ? null
            : ConditionBatch.PromptStates(encoder.Encode(negativePrompts ?? Enumerable.Repeat("", seeds.Count).ToArray(), model.Device, onWarning));
        // Each image's noise from its own seed, drawn in diffusers' order: the latent sample, the forward process's ε, then the steps'.
        using var noise = NoiseSource.PerSample(seeds);
        var latents = Encode(model, images.to(float32).to(model.Device), noise);
        var epsilon = noise.Next(latents.shape, model.Device);
        return FromLatents(model, options, states, negative, latents, epsilon, strength, noise, onStep, cancellationToken).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// From given scaled image latents (N, C, h, w) and the forward process's noise ε: x_t = √ᾱ_t z + √(1 − ᾱ_t) ε at the
    /// start timestep (diffusers' <c>scheduler.add_noise</c>, in the schedule's scale), the guided loop and decoding.
    /// Images (N, 3, H, W) in [−1, 1].
    /// </summary>
    public static Tensor FromLatents(DiffusionModel model, GenerationOptions options, ConditionBatch states, ConditionBatch? negative, Tensor latents,
        Tensor epsilon, double strength, NoiseSource? noise, Action<int, int>? onStep, CancellationToken cancellationToken)
    {
        var latentOptions = options with { SamplerOptions = options.SamplerOptions with { Clipping = X0Clipping.None } };
        using var sampler = SamplerFactory.Create(model, latentOptions);
        using var scope = NewDisposeScope();
        int steps = PipelineSteps.Steps(model, options);
        int start = StartIndex(sampler, steps, strength);
        var x = NoisedTo(model, sampler.Timesteps[start], latents, epsilon);
        var denoiser = TextToImagePipeline.Guided(model, states, negative, options.GuidanceScale, options.ForwardBatchSize);
        var final = SamplingLoop.Run(denoiser, sampler, x, steps, noise, onStep, cancellationToken, start);
        return TextToImagePipeline.Decode(model, final).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Scaled latents of images in [−1, 1]: a sample of each image's latent distribution, mean + std·ε with ε the next
    /// draw of <paramref name="noise"/> (one row per seed, as diffusers' sample with a generator per image), times the
    /// scaling factor. The encoder runs one image at a time (its activations at full size are large).
    /// </summary>
    public static Tensor Encode(DiffusionModel model, Tensor images, NoiseSource noise)
    {
        var vae = model.Autoencoder!;
        using var scope = NewDisposeScope();
        using var noGrad = inference_mode();
        var means = new List<Tensor>();
        var stds = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i++)
        {
            using var distribution = vae.Encode(images.narrow(0, i, 1));
            means.Add(distribution.Mean.alias());
            stds.Add(distribution.Std.alias());
        }
        var mean = cat(means, 0);
        var epsilon = noise.Next(mean.shape, model.Device);
        return ((mean + cat(stds, 0) * epsilon) * vae.ScalingFactor).MoveToOuterDisposeScope();
    }

    /// <summary>x at timestep t: √ᾱ_t z + √(1 − ᾱ_t) ε, with ᾱ at a fractional (Karras) timestep from its interpolated σ.</summary>
    public static Tensor NoisedTo(DiffusionModel model, double t, Tensor clean, Tensor epsilon)
    {
        double alphaCumprod = t == Math.Floor(t) ? model.Schedule.AlphasCumprod[(int)t] : NoiseLevels.AlphaCumprodOf(NoiseLevels.SigmaAt(model.Schedule, t));
        return Math.Sqrt(alphaCumprod) * clean + Math.Sqrt(1 - alphaCumprod) * epsilon;
    }

    /// <summary>Denoising steps that run: the last ⌊N·strength⌋ of N, as diffusers' get_timesteps counts.</summary>
    public static int Redrawn(int steps, double strength) => Math.Min((int)Math.Floor(steps * strength), steps);

    /// <summary>The index into the sampler's timesteps where the run starts (diffusers' <c>t_start * scheduler.order</c>); sets the sampler's timesteps.</summary>
    public static int StartIndex(IDiffusionSampler sampler, int steps, double strength)
    {
        sampler.SetTimesteps(steps);
        int redrawn = Redrawn(steps, strength);
        if (redrawn == 0) throw new ArgumentOutOfRangeException(nameof(strength), strength, $"Strength {strength} of {steps} steps runs none of them.");
        return (steps - redrawn) * sampler.Order;
    }

    public static void CheckStrength(double strength)
    {
        if (!(strength >= 0 && strength <= 1))
            throw new ArgumentOutOfRangeException(nameof(strength), strength, "The strength must lie in [0, 1] (0 keeps the image, 1 redraws it from nearly pure noise).");
    }

    public static (PromptEncoder Encoder, Networks.Autoencoders.AutoencoderKL Vae) Components(DiffusionModel model)
    {
        var encoder = model.Prompts ?? throw new ArgumentException("This model takes no prompts; it has no text encoder.", nameof(model));
        var vae = model.Autoencoder ?? throw new ArgumentException("This model has no autoencoder; prompt models here are latent (Stable Diffusion).", nameof(model));
        return (encoder, vae);
    }

    public static void CheckPrompts(IReadOnlyList<string> prompts, IReadOnlyList<string>? negativePrompts, IReadOnlyList<long> seeds)
    {
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        if (prompts.Count != seeds.Count) throw new ArgumentException($"There are {prompts.Count} prompts for {seeds.Count} seeds.", nameof(prompts));
        if (negativePrompts is not null && negativePrompts.Count != seeds.Count)
            throw new ArgumentException($"There are {negativePrompts.Count} negative prompts for {seeds.Count} seeds.", nameof(negativePrompts));
    }

    /// <summary>Images (N, 3, H, W), one per seed, H and W positive multiples of the autoencoder's factor, finite: (H, W).</summary>
    public static (int Height, int Width) CheckImages(DiffusionModel model, Tensor images, IReadOnlyList<long> seeds)
    {
        int factor = model.Autoencoder!.Config.DownscaleFactor;
        long channels = model.ImageShape[0];
        if (images.dim() != 4 || images.shape[1] != channels || images.shape[2] < factor || images.shape[2] % factor != 0 || images.shape[3] < factor || images.shape[3] % factor != 0)
            throw new ArgumentException(
                $"The images must have shape (N, {channels}, H, W) with H and W positive multiples of {factor} (the autoencoder's factor), not [{string.Join(", ", images.shape)}].", nameof(images));
        if (images.shape[0] != seeds.Count)
            throw new ArgumentException($"There are {images.shape[0]} images for {seeds.Count} seeds.", nameof(seeds));
        using var check = NewDisposeScope();
        long nonFinite = (~isfinite(images)).sum().item<long>();
        if (nonFinite > 0) throw new ArgumentException($"The images contain {nonFinite} NaN or infinite values.", nameof(images));
        return ((int)images.shape[2], (int)images.shape[3]);
    }
}
