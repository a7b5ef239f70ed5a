using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Options for <see cref="DiffusionCatalog.DiffusionImageToImage(TransformsCatalog, ITransformer, DiffusionImageToImageOptions)"/>:
/// image-to-image (SDEdit). Each row's image is noised by the forward process to <see cref="Strength"/> of the way along
/// the sampler's steps and sampled back from there (see <see cref="DiffusionPipelines.ImageToImage"/>), so the output
/// keeps the input's layout and colours more the lower the strength. The seed column gives each row its noise.
/// For a model that takes prompts (Stable Diffusion) the images go through its autoencoder
/// (<see cref="DiffusionPipelines.ImageToImageWithPrompts"/>): <see cref="DiffusionStageOptions.ConditionColumnName"/> is the
/// prompt text column (none: the empty prompt), <see cref="NegativePromptColumnName"/> the negative one, and the images are
/// <see cref="GenerationOptions.Width"/> × <see cref="GenerationOptions.Height"/> of <see cref="Generation"/> (multiples of
/// 8; unset, the model's own size), in and out.
/// </summary>
public sealed record DiffusionImageToImageOptions : DiffusionStageOptions
{
    /// <summary>Creates the options with the edited column named "EditedImage".</summary>
    public DiffusionImageToImageOptions() : base("EditedImage") { }

    /// <summary>
    /// The input image column: an image of the model's size (LoadImages + ResizeImages) or a float vector of its
    /// C×H×W pixels (ExtractPixels) in <see cref="PixelRange"/>. For a latent model the size is <see cref="Generation"/>'s
    /// Width × Height (the model's own when unset).
    /// </summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>
    /// For models that take prompts: a text column of what each row's image should steer away from; null uses the empty
    /// prompt. The prompts themselves are <see cref="DiffusionStageOptions.ConditionColumnName"/>.
    /// </summary>
    public string? NegativePromptColumnName { get; set; }

    internal override string? NegativePrompts => NegativePromptColumnName;

    /// <summary>The range of a float-vector input column (ExtractPixels gives bytes, 0–255).</summary>
    public PixelRange PixelRange { get; set; } = PixelRange.Bytes;

    /// <summary>How much to redraw, in [0, 1]: 0 returns the input unchanged, 1 generates from pure noise (the input is ignored).</summary>
    public double Strength { get; set; } = 0.6;

    /// <summary>Sampler, steps (of the whole trajectory: ⌊steps × strength⌋ of them run), its settings, guidance, and for latent models the image size.</summary>
    public GenerationOptions Generation { get; set; } = new();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (string.IsNullOrWhiteSpace(ImageColumnName)) throw new ArgumentException("ImageColumnName must be set.", nameof(ImageColumnName));
        if (!(Strength >= 0 && Strength <= 1))
            throw new ArgumentOutOfRangeException(nameof(Strength), Strength, "Strength must lie in [0, 1] (0 keeps the image, 1 redraws it from pure noise).");
        (Generation ?? throw new ArgumentNullException(nameof(Generation))).Validate();
    }

    internal override DiffusionStageOptions Snapshot() => this with { Generation = Generation with { } };
}
