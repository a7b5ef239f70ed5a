using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// The network family the quality studies train (--network): "unet2d", TrainDiffusion's default (diffusers' UNet2DModel
/// of the bench shape), or "unet", the library's own UNet of the same shape. Their files carry a tag, so both (and several
/// training seeds) can be kept side by side; the own UNet with seed 1 keeps the untagged names of earlier runs.
/// </summary>
internal static class BenchmarkNetworks
{
    public const string OwnUNet = "unet";
    public const string UNet2D = "unet2d";
    public static readonly string[] Names = [UNet2D, OwnUNet];

    /// <summary>The network of <paramref name="shape"/> in the chosen family.</summary>
    public static NoisePredictorOptions For(string network, UNetOptions shape) => network switch
    {
        OwnUNet => shape,
        UNet2D => DiffusersUNetShapes.Like(shape),
        _ => throw new ArgumentException($"Unknown network '{network}'; known: {string.Join(", ", Names)}."),
    };

    /// <summary>The tag of the chosen family and training seed in file and folder names ("" for the own UNet with seed 1).</summary>
    public static string Tag(BenchmarkOptions options) =>
        (options.Network == OwnUNet ? "" : $"-{options.Network}") + (options.TrainSeed == 1 ? "" : $"-seed{options.TrainSeed}");
}
