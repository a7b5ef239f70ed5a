namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>The type of the column <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/> adds.</summary>
public enum GeneratedOutputKind
{
    /// <summary>An image column (<c>MLImage</c>, RGBA) that ExtractPixels, ConvertToGrayscale and the other image stages accept.</summary>
    Image,
    /// <summary>A float vector of C×H×W planar pixels in [0, 255], the layout and range ExtractPixels produces.</summary>
    Pixels,
}
