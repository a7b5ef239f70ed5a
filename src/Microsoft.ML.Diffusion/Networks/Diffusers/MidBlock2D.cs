using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>UNetMidBlock2D</c>: residual block, self-attention (unless add_attention is false), residual block,
/// each divided by mid_block_scale_factor. Its attention has no GroupNorm when the residual blocks use scale-shift
/// time conditioning, as in diffusers.
/// </summary>
internal sealed class MidBlock2D : Module<Tensor, Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<SelfAttention2D>? attentions;

    public MidBlock2D(int channels, int timeChannels, UNet2DModelOptions o) : base(nameof(MidBlock2D))
    {
        double scale = o.MidBlockScaleFactor;
        resnets.Add(new ResnetBlock2D(channels, channels, timeChannels, o, scale));
        if (o.AddAttention)
        {
            int? groups = o.ResnetTimeScaleShift == "default" ? o.NormNumGroups : null;
            attentions = new ModuleList<SelfAttention2D>(new SelfAttention2D(channels, o.AttentionHeadDim ?? channels, groups, o.NormEps, scale));
        }
        resnets.Add(new ResnetBlock2D(channels, channels, timeChannels, o, scale));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        var h = resnets[0].forward(x, timeEmbedding);
        if (attentions is not null) h = attentions[0].forward(h);
        return resnets[1].forward(h, timeEmbedding);
    }
}
