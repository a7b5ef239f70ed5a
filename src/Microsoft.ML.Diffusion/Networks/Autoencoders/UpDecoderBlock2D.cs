using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' <c>UpDecoderBlock2D</c>: residual blocks without a timestep embedding (and, unlike the UNet's up
/// blocks, without skip connections), then (except at the last level) nearest-neighbour doubling and a convolution.
/// </summary>
internal sealed class UpDecoderBlock2D : Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int layers, bool upsample, int groups, double eps, string activation)
        : base(nameof(UpDecoderBlock2D))
    {
        for (int i = 0; i < layers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps, activation, scaleShift: false, dropout: 0.0));
        if (upsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var resnet in resnets) h = FeatureMaps.Replace(h, resnet.forward(h), x);
        if (upsamplers is not null) h = FeatureMaps.Replace(h, upsamplers[0].forward(h), x);
        return h.MoveToOuterDisposeScope();
    }
}
