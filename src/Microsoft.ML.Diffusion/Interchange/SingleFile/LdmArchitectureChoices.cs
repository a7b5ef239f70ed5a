namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// What a Stable Diffusion single file's tensors cannot show and the original configs (v1-inference.yaml,
/// v2-inference.yaml) fix: the group-norm groups, the UNet's heads and the text encoder's head width.
/// <see cref="StableDiffusion"/> is every SD 1.x and 2.x model's; other values describe tiny test networks.
/// </summary>
internal sealed record LdmArchitectureChoices(int NormGroups, int StableDiffusion1Heads, int StableDiffusion2HeadChannels, int TextHeadWidth)
{
    /// <summary>32 groups, 8 heads per level (1.x) or heads of 64 channels (2.x), text heads of 64 channels (CLIP ViT-L/14, OpenCLIP ViT-H/14).</summary>
    public static LdmArchitectureChoices StableDiffusion { get; } =
        new(32, StableDiffusionFamily.StableDiffusion1Heads, StableDiffusionFamily.StableDiffusion2HeadChannels, 64);
}
