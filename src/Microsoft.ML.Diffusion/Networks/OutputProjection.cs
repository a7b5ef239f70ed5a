using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The UNet's final 3×3 convolution to the image's channels. libtorch 2.10's CPU kernel computes wrong
/// (run-to-run different, sometimes NaN) input gradients for 3×3 convolutions with 8 or fewer output
/// channels when more than one thread is used, so the convolution is computed with at least
/// <see cref="MinimumComputedChannels"/> output channels and the first <c>channels</c> are kept. The
/// extra channels are zero-initialised and receive no gradient, so they stay inert.
/// </summary>
public sealed class OutputProjection : Module<Tensor, Tensor>
{
    /// <summary>Output channels actually computed (the smallest count measured safe was 12).</summary>
    public const int MinimumComputedChannels = 16;

    private readonly Conv2d conv;
    private readonly long _channels;

    /// <summary>Creates the projection from <paramref name="inChannels"/> to <paramref name="channels"/> channels.</summary>
    public OutputProjection(int inChannels, int channels) : base(nameof(OutputProjection))
    {
        _channels = channels;
        conv = Conv2d(inChannels, Math.Max(channels, MinimumComputedChannels), 3, padding: 1);
        // Zero-initialised (as in DDPM's code): the untrained network predicts 0, a calm start for the loss.
        using (NewDisposeScope())   // releases the wrappers zero_ returns
        using (no_grad())
        {
            conv.weight!.zero_();
            conv.bias!.zero_();
        }
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = conv.forward(x);
        return (y.shape[1] == _channels ? y : y.narrow(1, 0, _channels)).MoveToOuterDisposeScope();
    }
}
