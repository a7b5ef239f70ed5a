using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>diffusers' <c>Upsample2D</c> with a convolution: nearest-neighbour doubling, then a 3×3 convolution.</summary>
internal sealed class Upsample2D : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2D(int channels) : base(nameof(Upsample2D))
    {
        conv = Conv2d(channels, channels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var doubled = functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        return conv.forward(doubled);
    }

    /// <summary>
    /// Nearest-neighbour resizing to <paramref name="size"/> (height, width) instead of doubling, then the convolution:
    /// diffusers' upsample_size, which UNet2DConditionModel passes when the down path halved an odd side.
    /// </summary>
    public Tensor forward(Tensor x, long[] size)
    {
        using var resized = functional.interpolate(x, size: size, mode: InterpolationMode.Nearest);
        return conv.forward(resized);
    }
}
