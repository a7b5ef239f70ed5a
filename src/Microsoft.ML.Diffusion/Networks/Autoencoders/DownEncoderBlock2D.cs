using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' <c>DownEncoderBlock2D</c>: residual blocks without a timestep embedding, then (except at the last
/// level) a stride-2 convolution after padding right and bottom by one, as the VAE's encoder builds it.
/// </summary>
internal sealed class DownEncoderBlock2D : Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int layers, bool downsample, int groups, double eps, string activation)
        : base(nameof(DownEncoderBlock2D))
    {
        for (int i = 0; i < layers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps, activation, scaleShift: false, dropout: 0.0));
        if (downsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, padding: 0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var resnet in resnets) h = FeatureMaps.Replace(h, resnet.forward(h), x);
        if (downsamplers is not null) h = FeatureMaps.Replace(h, downsamplers[0].forward(h), x);
        return h.MoveToOuterDisposeScope();
    }
}
