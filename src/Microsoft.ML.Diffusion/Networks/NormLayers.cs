using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>Normalisation layers built the way every module here needs them.</summary>
internal static class NormLayers
{
    /// <summary>
    /// A GroupNorm with its affine parameters set to the identity (weight 1, bias 0). TorchSharp 0.107's
    /// <c>nn.GroupNorm</c> leaves them uninitialised (memory garbage, sometimes NaN), so we set them here.
    /// </summary>
    public static GroupNorm GroupNorm(int groups, int channels, double eps = 1e-5)
    {
        var norm = nn.GroupNorm(groups, channels, eps);
        // The scope releases the wrappers that fill_/zero_ return (one each, never disposed otherwise).
        using (NewDisposeScope())
        using (no_grad())
        {
            norm.weight!.fill_(1.0);
            norm.bias!.zero_();
        }
        return norm;
    }

    /// <summary>A LayerNorm with its affine parameters explicitly set to the identity (see <see cref="GroupNorm"/>).</summary>
    public static LayerNorm LayerNorm(int features)
    {
        var norm = nn.LayerNorm(features);
        // The scope releases the wrappers that fill_/zero_ return (one each, never disposed otherwise).
        using (NewDisposeScope())
        using (no_grad())
        {
            norm.weight!.fill_(1.0);
            norm.bias!.zero_();
        }
        return norm;
    }
}
