using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Options for <see cref="DiffusionCatalog.DiffusionInpaint(TransformsCatalog, ITransformer, DiffusionInpaintingOptions)"/>:
/// RePaint inpainting (see <see cref="DiffusionPipelines.Inpaint"/>). Where a row's mask is 1 the model redraws the image,
/// where it is 0 the output equals the input exactly. A row whose mask is all zeros is returned as it is, without
/// sampling; a mask of ones draws a new image. For a model that takes prompts (Stable Diffusion) RePaint runs over its
/// autoencoder's latents (<see cref="DiffusionPipelines.InpaintWithPrompts"/>): <see cref="DiffusionStageOptions.ConditionColumnName"/>
/// is the prompt text column (none: the empty prompt), <see cref="NegativePromptColumnName"/> the negative one, and images
/// and masks are <see cref="Width"/> × <see cref="Height"/>.
/// </summary>
public sealed record DiffusionInpaintingOptions : DiffusionStageOptions
{
    /// <summary>Creates the options with the inpainted column named "InpaintedImage".</summary>
    public DiffusionInpaintingOptions() : base("InpaintedImage") { }

    /// <summary>
    /// The input image column: an image of the model's size (LoadImages + ResizeImages) or a float vector of its
    /// C×H×W pixels (ExtractPixels) in <see cref="PixelRange"/>.
    /// </summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>The range of a float-vector image column (ExtractPixels gives bytes, 0–255).</summary>
    public PixelRange PixelRange { get; set; } = PixelRange.Bytes;

    /// <summary>
    /// The mask column, 1 = redraw: an image of the model's size (white redraws, black keeps; its grey level is the value),
    /// or a float vector of H×W values (one mask for all channels) or C×H×W values, each in [0, 1].
    /// </summary>
    public string MaskColumnName { get; set; } = "Mask";

    /// <summary>
    /// For models that take prompts: a text column of what each row's image should steer away from; null uses the empty
    /// prompt. The prompts themselves are <see cref="DiffusionStageOptions.ConditionColumnName"/>.
    /// </summary>
    public string? NegativePromptColumnName { get; set; }

    /// <summary>
    /// For latent models: the width in pixels of the images and masks the stage reads and writes (a multiple of 8); null
    /// uses the model's own size. Pixel models work at their size.
    /// </summary>
    public int? Width { get; set; }

    /// <summary>For latent models: the height in pixels of the images and masks (a multiple of 8); null uses the model's own size.</summary>
    public int? Height { get; set; }

    internal override string? NegativePrompts => NegativePromptColumnName;

    /// <summary>RePaint's steps, jumps, resamplings, η and guidance.</summary>
    public InpaintingOptions Inpainting { get; set; } = new();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (string.IsNullOrWhiteSpace(ImageColumnName)) throw new ArgumentException("ImageColumnName must be set.", nameof(ImageColumnName));
        if (string.IsNullOrWhiteSpace(MaskColumnName)) throw new ArgumentException("MaskColumnName must be set.", nameof(MaskColumnName));
        if (Width is < 1) throw new ArgumentOutOfRangeException(nameof(Width), Width, "Width must be positive.");
        if (Height is < 1) throw new ArgumentOutOfRangeException(nameof(Height), Height, "Height must be positive.");
        (Inpainting ?? throw new ArgumentNullException(nameof(Inpainting))).Validate();
    }

    internal override DiffusionStageOptions Snapshot() => this with { Inpainting = Inpainting with { } };
}
