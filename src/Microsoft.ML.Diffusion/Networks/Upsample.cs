using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>Doubles the feature map: nearest-neighbour upsampling, then a 3×3 convolution.</summary>
public sealed class Upsample : Module<Tensor, Tensor>
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
        var up = functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        return conv.forward(up).MoveToOuterDisposeScope();
    }
}
