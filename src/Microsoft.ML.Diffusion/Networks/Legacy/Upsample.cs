using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>Doubles the feature map: nearest-neighbour upsampling, then a 3×3 convolution.</summary>
internal sealed class Upsample : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    /// <summary>Creates the layer for <paramref name="channels"/> channels.</summary>
    public Upsample(int channels) : base(nameof(Upsample))
    {
        conv = Conv2d(channels, channels, 3, padding: 1);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return conv.forward(NearestDouble(x)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Nearest-neighbour ×2 upsampling of (N, C, H, W): each pixel becomes a 2×2 block. Written as one copy of a
    /// broadcast view because libtorch 2.10's interpolate kernel, at the bench network's 64 channels 14→28
    /// (batch 64), took ≈ 10× as long backward and up to 20× forward (it is faster only on small maps, by under a millisecond).
    /// </summary>
    public static Tensor NearestDouble(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 4) throw new ArgumentException($"Expected (N, C, H, W), got {x.dim()} dimensions.", nameof(x));
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        using var blocks = x.reshape(n, c, h, 1, w, 1);
        using var wide = blocks.expand(n, c, h, 2, w, 2);
        return wide.reshape(n, c, 2 * h, 2 * w);
    }
}
