using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>diffusers' <c>Downsample2D</c> with a convolution: a stride-2 3×3 convolution; padding 0 pads right and bottom by one first.</summary>
internal sealed class Downsample2D : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly bool _padRightBottom;

    public Downsample2D(int channels, int padding) : base(nameof(Downsample2D))
    {
        _padRightBottom = padding == 0;
        conv = Conv2d(channels, channels, 3, stride: 2, padding: padding);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (!_padRightBottom) return conv.forward(x);
        using var padded = functional.pad(x, [0, 1, 0, 1]);
        return conv.forward(padded);
    }
}
