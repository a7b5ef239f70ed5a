using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// Releases feature maps as soon as the next one exists: at 512×512 pixels one map of the decoder's last levels
/// takes over 100 MB, and a forward's dispose scope would otherwise hold every level's output to its end.
/// </summary>
internal static class FeatureMaps
{
    /// <summary>Disposes <paramref name="previous"/> (unless it is the caller's <paramref name="input"/>) and returns <paramref name="next"/>.</summary>
    public static Tensor Replace(Tensor previous, Tensor next, Tensor input)
    {
        if (!ReferenceEquals(previous, input)) previous.Dispose();
        return next;
    }
}
