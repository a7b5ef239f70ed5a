using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' <c>UNetMidBlock2D</c> as the VAE's encoder and decoder build it: residual block, self-attention,
/// residual block, none with a timestep embedding. The attention has one head as wide as the block
/// (attention_head_dim = channels), a GroupNorm and no output rescaling.
/// </summary>
internal sealed class AutoencoderMidBlock2D : Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<SelfAttention2D> attentions;

    public AutoencoderMidBlock2D(int channels, int groups, double eps, string activation) : base(nameof(AutoencoderMidBlock2D))
    {
        resnets.Add(new ResnetBlock2D(channels, channels, null, groups, eps, activation, scaleShift: false, dropout: 0.0));
        attentions = new ModuleList<SelfAttention2D>(new SelfAttention2D(channels, headDim: channels, groups, eps, rescale: 1.0));
        resnets.Add(new ResnetBlock2D(channels, channels, null, groups, eps, activation, scaleShift: false, dropout: 0.0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = resnets[0].forward(x);
        h = attentions[0].forward(h);
        return resnets[1].forward(h).MoveToOuterDisposeScope();
    }
}
