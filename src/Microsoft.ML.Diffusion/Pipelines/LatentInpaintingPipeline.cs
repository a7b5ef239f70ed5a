using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// RePaint inpainting with a latent model: <see cref="RePaintSampler"/>'s walk over the autoencoder's latents of the
/// images, the mask brought to the latent grid (a latent cell is redrawn if any of its pixels is), prompt guidance, the
/// latents decoded, and the kept pixels pasted back from the input so that they come out exactly as they went in.
/// </summary>
internal static class LatentInpaintingPipeline
{
    public static Tensor Run(DiffusionModel model, InpaintingOptions options, Tensor images, Tensor mask, IReadOnlyList<string> prompts,
        IReadOnlyList<string>? negativePrompts, IReadOnlyList<long> seeds, Action<int, int>? onStep, CancellationToken cancellationToken, Action<string>? onWarning)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(mask);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(seeds);
        options.Validate();
        var (encoder, vae) = LatentImageToImagePipeline.Components(model);
        LatentImageToImagePipeline.CheckPrompts(prompts, negativePrompts, seeds);
        var (height, width) = LatentImageToImagePipeline.CheckImages(model, images, seeds);
        CheckMask(mask, images);
        if (options.Steps > model.Schedule.Length) throw new ArgumentOutOfRangeException(nameof(options), options.Steps, $"Steps must not exceed the schedule's {model.Schedule.Length} steps.");
        LatentSize.CheckMemory(model, height, width, Math.Min(options.ForwardBatchSize, 2 * seeds.Count));

        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        using var states = ConditionBatch.PromptStates(encoder.Encode(prompts, model.Device, onWarning));
        using var negative = options.GuidanceScale == 1.0 ? null
            : ConditionBatch.PromptStates(encoder.Encode(negativePrompts ?? Enumerable.Repeat("", seeds.Count).ToArray(), model.Device, onWarning));
        var pixels = images.to(float32).to(model.Device);
        var redrawPixels = mask.to(float32).to(model.Device).amax([1], keepdim: true);   // (N, 1, H, W): any channel redrawn
        using var noise = NoiseSource.PerSample(seeds);
        var known = LatentImageToImagePipeline.Encode(model, pixels, noise);
        int factor = vae.Config.DownscaleFactor;
        var redraw = nn.functional.max_pool2d(redrawPixels, factor, factor).expand(known.shape);
        var denoiser = TextToImagePipeline.Guided(model, states, negative, options.GuidanceScale, options.ForwardBatchSize);
        var latents = InpaintingPipeline.Walk(model, options, denoiser, known, redraw, noise, pixels: false, onStep, cancellationToken);
        var decoded = TextToImagePipeline.Decode(model, latents);
        // Outside the mask the input, exactly: 0·decoded + 1·input (per channel for a mask of the images' channels).
        var redrawn = mask.to(float32).to(model.Device).expand(pixels.shape);
        return (redrawn * decoded + (1 - redrawn) * pixels).MoveToOuterDisposeScope();
    }

    // (N, 1 or 3, H, W) of the images' size, values in [0, 1].
    private static void CheckMask(Tensor mask, Tensor images)
    {
        long n = images.shape[0], c = images.shape[1], h = images.shape[2], w = images.shape[3];
        if (mask.dim() != 4 || mask.shape[0] != n || (mask.shape[1] != 1 && mask.shape[1] != c) || mask.shape[2] != h || mask.shape[3] != w)
            throw new ArgumentException($"The mask must have shape ({n}, 1 or {c}, {h}, {w}) to match the images, not [{string.Join(", ", mask.shape)}].", nameof(mask));
        using var check = NewDisposeScope();
        if (!(mask.min().item<float>() >= 0 && mask.max().item<float>() <= 1)) throw new ArgumentException("The mask's values must lie in [0, 1] (1 = redraw).", nameof(mask));
    }
}
