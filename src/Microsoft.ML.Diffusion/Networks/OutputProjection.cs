using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The UNet's final 3×3 convolution to the image's channels, with weights of the natural shape (C, in, 3, 3).
/// libtorch 2.10's CPU kernel computes wrong (run-to-run different, sometimes NaN) input gradients for 3×3
/// convolutions with 8 or fewer output channels when more than one thread is used, so the forward pass pads the
/// weights with zero filters to <see cref="MinimumComputedChannels"/> outputs and keeps the first C whenever autograd
/// records the pass: the workaround lives here, at run time, and never reaches a model file. Passes without gradients
/// (sampling) run the plain convolution. Its parameters are named weight and bias, as a Conv2d's.
/// </summary>
internal sealed class OutputProjection : Module<Tensor, Tensor>
{
    /// <summary>Output channels actually computed (the smallest count measured safe was 12).</summary>
    public const int MinimumComputedChannels = 16;

    private readonly Parameter weight;
    private readonly Parameter bias;

    /// <summary>
    /// Creates the projection from <paramref name="inChannels"/> to <paramref name="channels"/> channels, zero-initialised
    /// (as in DDPM's code: the untrained network predicts 0, a calm start for the loss) or, with
    /// <paramref name="zeroInitialised"/> false, initialised as TorchSharp's Conv2d of that shape is, from the same draws.
    /// </summary>
    public OutputProjection(int inChannels, int channels, bool zeroInitialised = true) : base(nameof(OutputProjection))
    {
        Tensor w, b;
        using (NewDisposeScope())
        {
            if (zeroInitialised)
            {
                // A throw-away layer of the computed width draws from torch's global generator as a plain Conv2d would, so
                // seeded networks get the same weights in every other layer as they always have.
                Conv2d(inChannels, Math.Max(channels, MinimumComputedChannels), 3, padding: 1).Dispose();
                w = zeros(channels, inChannels, 3, 3);
                b = zeros(channels);
            }
            else
            {
                using var conv = Conv2d(inChannels, channels, 3, padding: 1);
                w = conv.weight!.detach().clone();
                b = conv.bias!.detach().clone();
            }
            // Detached, so that neither this scope nor the caller's construction scope disposes them.
            w = w.DetachFromDisposeScope();
            b = b.DetachFromDisposeScope();
        }
        weight = (Parameter)Parameter(w).DetachFromDisposeScope();
        bias = (Parameter)Parameter(b).DetachFromDisposeScope();
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long channels = weight.shape[0], padding = MinimumComputedChannels - channels;
        if (!is_grad_enabled() || !(x.requires_grad || weight.requires_grad)) padding = 0;   // no backward pass to protect
        // Zero filters appended along the output dimension (pad's last pair addresses the first dimension).
        var w = padding > 0 ? functional.pad(weight, [0, 0, 0, 0, 0, 0, 0, padding]) : weight;
        var b = padding > 0 ? functional.pad(bias, [0, padding]) : bias;
        var y = functional.conv2d(x, w, b, padding: [1, 1]);
        return (padding > 0 ? y.narrow(1, 0, channels) : y).MoveToOuterDisposeScope();
    }
}
