using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// The network family the quality studies train (--network): "unet2d", TrainDiffusion's default (diffusers' UNet2DModel
/// of the bench shape). Its files carry the tag "-unet2d" (and "-seedN" for training seeds other than 1), so they sit
/// beside the untagged files of the library's first UNet, which earlier runs trained and which no longer trains.
/// </summary>
internal static class BenchmarkNetworks
{
    public const string UNet2D = "unet2d";
    public static readonly string[] Names = [UNet2D];

    // The name the library's first UNet had here: refused with a pointer to its published measurements.
    private const string FirstUNet = "unet";

    /// <summary>The family <paramref name="name"/> names; throws naming the known ones otherwise.</summary>
    public static string Parse(string name, string option) => name switch
    {
        UNet2D => UNet2D,
        FirstUNet => throw new ArgumentException(
            $"{option} {FirstUNet}: the library's first UNet no longer trains (its model files still load); " +
            "its measurements are in docs/training-recipe.md and docs/fashion-mnist.md. Use --network unet2d (the default)."),
        _ => throw new ArgumentException($"{option} is one of {string.Join(", ", Names)}, not '{name}'."),
    };

    /// <summary>The network of <paramref name="shape"/> in the chosen family.</summary>
    public static NoisePredictorOptions For(string network, UNetOptions shape) => network switch
    {
        UNet2D => DiffusersUNetShapes.Like(shape),
        _ => throw new ArgumentException($"Unknown network '{network}'; known: {string.Join(", ", Names)}."),
    };

    /// <summary>The tag of the chosen family and training seed in file and folder names.</summary>
    public static string Tag(BenchmarkOptions options) =>
        $"-{options.Network}" + (options.TrainSeed == 1 ? "" : $"-seed{options.TrainSeed}");
}
