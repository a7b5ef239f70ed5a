using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// The sampling tasks over a <see cref="DiffusionModel"/>: generate, image-to-image, inpaint and interpolate. Each task
/// lives in a pipeline of its own; the model holds only its components. The ML.NET stages (<c>DiffusionGenerate</c>,
/// <c>DiffusionImageToImage</c>, <c>DiffusionInpaint</c>) run the same pipelines.
/// </summary>
public static class DiffusionPipelines
{
    /// <summary>A sampler configured for the model's prediction type.</summary>
    public static IDiffusionSampler CreateSampler(this DiffusionModel model, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        return SamplerFactory.Create(model, options);
    }

    /// <summary>
    /// Generates one image per seed, in one sampler run over the whole batch. Each image depends only on
    /// its own seed (its starting noise and step noise come from a generator of its own).
    /// </summary>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    /// <param name="model">The model.</param>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per seed for a conditional model; null samples unconditionally.</param>
    public static Tensor Generate(this DiffusionModel model, GenerationOptions options, IReadOnlyList<long> seeds, Action<int, int>? onStep = null,
        CancellationToken cancellationToken = default, ConditionBatch? condition = null)
        => GenerationPipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, seeds, onStep, cancellationToken, condition);

    /// <summary>
    /// Text-to-image with a model that takes prompts (Stable Diffusion): one image per prompt and seed, guided by
    /// <see cref="GenerationOptions.GuidanceScale"/> against the negative prompt (empty when none is given) as diffusers'
    /// StableDiffusionPipeline does, at <see cref="GenerationOptions.Width"/> × <see cref="GenerationOptions.Height"/>.
    /// Prompts longer than the text encoder's 77 positions are truncated, as diffusers does, and
    /// <paramref name="onWarning"/> says what was dropped.
    /// </summary>
    /// <returns>Images (N, 3, H, W) in [−1, 1], owned by the caller.</returns>
    /// <param name="model">A model with a text encoder (<see cref="DiffusionModel.TakesPrompts"/>).</param>
    /// <param name="options">Sampler, steps, guidance and size.</param>
    /// <param name="prompts">One prompt per image ("" samples unconditionally).</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="negativePrompts">What to steer away from, one per image; null uses the empty prompt.</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="onWarning">Hears of prompts cut short.</param>
    public static Tensor TextToImage(this DiffusionModel model, GenerationOptions options, IReadOnlyList<string> prompts, IReadOnlyList<long> seeds,
        IReadOnlyList<string>? negativePrompts = null, Action<int, int>? onStep = null, CancellationToken cancellationToken = default, Action<string>? onWarning = null)
        => TextToImagePipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, prompts, negativePrompts, seeds, onStep, cancellationToken, onWarning);

    /// <summary>
    /// Image-to-image (SDEdit, Meng et al. 2022): each image is noised by the forward process to the point
    /// <paramref name="strength"/> of the way along the sampler's timesteps, then denoised from there with
    /// <paramref name="options"/>' sampler, so the result keeps the image's layout and colours more the lower the strength.
    /// With N steps the last ⌊N·strength⌋ of them run (as diffusers' img2img pipelines count). Strength 0 returns the images
    /// unchanged; strength 1 is <see cref="Generate"/> for the same seeds, starting from pure noise. Each image's noise comes
    /// from its own seed.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="images">Images (N, C, H, W) in [−1, 1], of the model's shape.</param>
    /// <param name="strength">How much to redraw, in [0, 1].</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per image for a conditional model; null samples unconditionally.</param>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor ImageToImage(this DiffusionModel model, GenerationOptions options, Tensor images, double strength, IReadOnlyList<long> seeds,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default, ConditionBatch? condition = null)
        => ImageToImagePipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, images, strength, seeds, onStep, cancellationToken, condition);

    /// <summary>
    /// Image-to-image with a model that takes prompts (Stable Diffusion), as diffusers' StableDiffusionImg2ImgPipeline: each
    /// image is encoded by the autoencoder (a sample of its latent distribution, scaled), noised by the forward process to
    /// the sampler's step where the last ⌊N·<paramref name="strength"/>⌋ of N steps begin, denoised from there guided by
    /// <see cref="GenerationOptions.GuidanceScale"/> towards the prompt and away from the negative prompt, and decoded.
    /// The images may have any size whose sides are multiples of the autoencoder's factor (8); the output has that size
    /// (<see cref="GenerationOptions.Width"/> and <see cref="GenerationOptions.Height"/> are not used). Strength 0 returns the
    /// images unchanged; strength 1 starts from the first timestep, where little of the image is left. Each image's noise
    /// (the latent sample, the forward process's and a stochastic sampler's) comes from its own seed.
    /// </summary>
    /// <param name="model">A model with a text encoder and an autoencoder (<see cref="DiffusionModel.TakesPrompts"/>).</param>
    /// <param name="options">Sampler, steps (of the whole trajectory) and guidance.</param>
    /// <param name="images">Images (N, 3, H, W) in [−1, 1], H and W multiples of 8.</param>
    /// <param name="strength">How much to redraw, in [0, 1].</param>
    /// <param name="prompts">One prompt per image ("" is unconditional).</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="negativePrompts">What to steer away from, one per image; null uses the empty prompt.</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="onWarning">Hears of prompts cut short.</param>
    /// <returns>Images (N, 3, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor ImageToImageWithPrompts(this DiffusionModel model, GenerationOptions options, Tensor images, double strength, IReadOnlyList<string> prompts,
        IReadOnlyList<long> seeds, IReadOnlyList<string>? negativePrompts = null, Action<int, int>? onStep = null, CancellationToken cancellationToken = default,
        Action<string>? onWarning = null)
        => LatentImageToImagePipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, images, strength, prompts, negativePrompts, seeds,
            onStep, cancellationToken, onWarning);

    /// <summary>
    /// Inpainting by RePaint (Lugmayr et al. 2022): where <paramref name="mask"/> is 1 the model redraws the image, where
    /// it is 0 the image is kept, and the output equals the input there exactly. At each step the kept region is the
    /// input noised by the forward process to that step and the redrawn region is the model's denoising step; jumping
    /// back and resampling (<see cref="InpaintingOptions.JumpLength"/>, <see cref="InpaintingOptions.Resamplings"/>) makes the two
    /// agree. A mask of zeros returns the images; a mask of ones draws new images (with this walk, not
    /// <see cref="Generate"/>'s sampler). Each image's noise comes from its own seed.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="options">Steps, jumps, η and guidance.</param>
    /// <param name="images">Images (N, C, H, W) in [−1, 1], of the model's shape.</param>
    /// <param name="mask">1 where to redraw, 0 where to keep: (N, 1, H, W) for all channels or (N, C, H, W); values in [0, 1].</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per image for a conditional model; null samples unconditionally.</param>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor Inpaint(this DiffusionModel model, InpaintingOptions options, Tensor images, Tensor mask, IReadOnlyList<long> seeds,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default, ConditionBatch? condition = null)
        => InpaintingPipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, images, mask, seeds, onStep, cancellationToken, condition);

    /// <summary>
    /// Inpainting with a model that takes prompts (Stable Diffusion): RePaint (see <see cref="Inpaint"/>) over the autoencoder's
    /// latents of the images, where a latent cell is redrawn if any of the pixels it covers is (the mask max-pooled to the
    /// latent grid), each step guided by <see cref="InpaintingOptions.GuidanceScale"/> towards the prompt and away from the
    /// negative prompt. The latents are decoded and the kept pixels pasted back from the input, so where
    /// <paramref name="mask"/> is 0 the output equals the input exactly; where it is fractional the two are blended. The
    /// images may have any size whose sides are multiples of 8. Each image's noise comes from its own seed.
    /// </summary>
    /// <param name="model">A model with a text encoder and an autoencoder (<see cref="DiffusionModel.TakesPrompts"/>).</param>
    /// <param name="options">Steps, jumps, η and guidance.</param>
    /// <param name="images">Images (N, 3, H, W) in [−1, 1], H and W multiples of 8.</param>
    /// <param name="mask">1 where to redraw, 0 where to keep: (N, 1, H, W) for all channels or (N, 3, H, W); values in [0, 1].</param>
    /// <param name="prompts">One prompt per image ("" is unconditional).</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="negativePrompts">What to steer away from, one per image; null uses the empty prompt.</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="onWarning">Hears of prompts cut short.</param>
    /// <returns>Images (N, 3, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor InpaintWithPrompts(this DiffusionModel model, InpaintingOptions options, Tensor images, Tensor mask, IReadOnlyList<string> prompts,
        IReadOnlyList<long> seeds, IReadOnlyList<string>? negativePrompts = null, Action<int, int>? onStep = null, CancellationToken cancellationToken = default,
        Action<string>? onWarning = null)
        => LatentInpaintingPipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, images, mask, prompts, negativePrompts, seeds,
            onStep, cancellationToken, onWarning);

    /// <summary>
    /// A strip of <paramref name="count"/> images moving smoothly from seed <paramref name="seedA"/>'s image to
    /// <paramref name="seedB"/>'s: the starting noises are spherically interpolated (slerp keeps them at the norm of
    /// Gaussian noise, where a straight line would pass through low-norm noise the model never saw), then sampled. With
    /// a deterministic sampler (DDIM at η = 0, DPM-Solver++, Heun) the ends are <see cref="Generate"/>'s images of the two
    /// seeds (up to the float rounding of another batch size); a stochastic sampler's step noise comes from <paramref name="seedA"/>.
    /// </summary>
    /// <returns>Images (count, C, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor Interpolate(this DiffusionModel model, GenerationOptions options, long seedA, long seedB, int count, Action<int, int>? onStep = null,
        CancellationToken cancellationToken = default, ConditionBatch? condition = null)
        => SeedInterpolationPipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, seedA, seedB, count, onStep, cancellationToken, condition);

    /// <summary>
    /// A strip of <paramref name="count"/> images of one seed moving from condition <paramref name="from"/> to
    /// <paramref name="to"/> (two classes, two prompts, two vectors): every image starts from the seed's noise, and image i's
    /// prediction at each step is (1 − λᵢ)·ε(x, from) + λᵢ·ε(x, to) with λᵢ = i / (count − 1), each side guided by
    /// <see cref="GenerationOptions.GuidanceScale"/> (the weighted sum of predictions of composable diffusion, Liu et al.
    /// 2022). The ends are <see cref="Generate"/>'s images of the seed under each condition (up to the float rounding of
    /// another batch size); the network is evaluated twice per image and step.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="seed">The seed of every image's starting noise (and a stochastic sampler's step noise).</param>
    /// <param name="from">The first image's condition (a batch of one).</param>
    /// <param name="to">The last image's condition (a batch of one).</param>
    /// <param name="count">Images in the strip, at least 2.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <returns>Images (count, C, H, W) in [−1, 1], owned by the caller.</returns>
    public static Tensor InterpolateConditions(this DiffusionModel model, GenerationOptions options, long seed, ConditionBatch from, ConditionBatch to, int count,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default)
        => ConditionInterpolationPipeline.Run(model ?? throw new ArgumentNullException(nameof(model)), options, seed, from, to, count, onStep, cancellationToken);
}
