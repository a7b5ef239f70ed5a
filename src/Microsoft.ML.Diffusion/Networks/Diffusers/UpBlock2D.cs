using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>UpBlock2D</c> and <c>AttnUpBlock2D</c>: layers_per_block + 1 residual blocks, each on the previous
/// output concatenated with the matching down-path feature map (each followed by self-attention in the attention
/// variant) and, except at the last level, nearest-neighbour upsampling with a convolution.
/// </summary>
internal sealed class UpBlock2D : Module<Tensor, Tensor[], Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<SelfAttention2D>? attentions;
    private readonly ModuleList<Upsample2D>? upsamplers;

    // inChannels: channels of the last skip this block takes (the next shallower level's output);
    // previousChannels: channels coming up from the level below.
    public UpBlock2D(int inChannels, int previousChannels, int outChannels, int timeChannels, bool attention, bool upsample, UNet2DModelOptions o)
        : base(nameof(UpBlock2D))
    {
        if (attention) attentions = new ModuleList<SelfAttention2D>();
        int layers = o.LayersPerBlock + 1;
        for (int i = 0; i < layers; i++)
        {
            int skipChannels = i == layers - 1 ? inChannels : outChannels;
            int resnetIn = i == 0 ? previousChannels : outChannels;
            resnets.Add(new ResnetBlock2D(resnetIn + skipChannels, outChannels, timeChannels, o));
            attentions?.Add(new SelfAttention2D(outChannels, o.AttentionHeadDim ?? outChannels, o.NormNumGroups, o.NormEps, 1.0));
        }
        if (upsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels));
        RegisterComponents();
    }

    /// <summary>The number of down-path feature maps this block consumes (the last ones, deepest first).</summary>
    public int SkipCount => resnets.Count;

    // skips: this block's down-path feature maps in down-path order; the last is used first.
    public override Tensor forward(Tensor x, Tensor[] skips, Tensor timeEmbedding)
    {
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = cat([h, skips[skips.Length - 1 - i]], 1);
            h = resnets[i].forward(h, timeEmbedding);
            if (attentions is not null) h = attentions[i].forward(h);
        }
        if (upsamplers is not null) h = upsamplers[0].forward(h);
        return h;
    }
}
