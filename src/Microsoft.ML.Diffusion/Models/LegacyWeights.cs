using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// Brings weights from format-1 files (UNet only) to today's names and shapes: the output convolution was stored as
/// <c>output_conv.conv.*</c> with 16 output channels, the extra ones zero (a libtorch workaround now kept at run time).
/// </summary>
internal static class LegacyWeights
{
    /// <summary>Renames and narrows in place; the replaced tensors are disposed.</summary>
    public static Dictionary<string, Tensor> Upgrade(Dictionary<string, Tensor> weights, NoisePredictorOptions network)
    {
        foreach (var part in new[] { "weight", "bias" })
        {
            if (!weights.Remove($"output_conv.conv.{part}", out var padded)) continue;
            using (padded)
                weights[$"output_conv.{part}"] = padded.narrow(0, 0, network.ImageChannels).clone().DetachFromDisposeScope();
        }
        return weights;
    }

    /// <summary>Reads format-1 weight bytes into today's state.</summary>
    public static Dictionary<string, Tensor> Read(byte[] weights, NoisePredictorOptions network, string source)
        => Upgrade(TorchSharpWeights.Read(weights, source), network);
}
