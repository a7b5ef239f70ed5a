using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>Halves the feature map with a strided 3×3 convolution (learned, unlike pooling).</summary>
internal sealed class Downsample : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    /// <summary>Creates the layer for <paramref name="channels"/> channels.</summary>
    public Downsample(int channels) : base(nameof(Downsample))
    {
        conv = Conv2d(channels, channels, 3, stride: 2, padding: 1);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => conv.forward(x);
}
