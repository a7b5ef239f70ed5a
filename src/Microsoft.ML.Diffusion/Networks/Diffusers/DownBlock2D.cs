using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>DownBlock2D</c> and <c>AttnDownBlock2D</c>: residual blocks (each followed by self-attention in the
/// attention variant) and, except at the last level, a stride-2 downsampling. Returns the output and every
/// intermediate feature map the up path concatenates.
/// </summary>
internal sealed class DownBlock2D : Module<Tensor, Tensor, (Tensor Output, Tensor[] Skips)>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<SelfAttention2D>? attentions;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownBlock2D(int inChannels, int outChannels, int timeChannels, bool attention, bool downsample, UNet2DModelOptions o)
        : base(nameof(DownBlock2D))
    {
        if (attention) attentions = new ModuleList<SelfAttention2D>();
        for (int i = 0; i < o.LayersPerBlock; i++)
        {
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, timeChannels, o));
            attentions?.Add(new SelfAttention2D(outChannels, o.AttentionHeadDim ?? outChannels, o.NormNumGroups, o.NormEps, 1.0));
        }
        if (downsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, o.DownsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Output, Tensor[] Skips) forward(Tensor x, Tensor timeEmbedding)
    {
        var skips = new List<Tensor>();
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = resnets[i].forward(h, timeEmbedding);
            if (attentions is not null) h = attentions[i].forward(h);
            skips.Add(h);
        }
        if (downsamplers is not null)
        {
            h = downsamplers[0].forward(h);
            skips.Add(h);
        }
        return (h, skips.ToArray());
    }
}
