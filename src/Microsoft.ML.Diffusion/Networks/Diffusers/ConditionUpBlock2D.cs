using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>CrossAttnUpBlock2D</c> and <c>UpBlock2D</c> as UNet2DConditionModel builds them: residual blocks, each
/// on the previous output concatenated with the matching down-path feature map (each followed by a cross-attention
/// transformer in the CrossAttn variant) and, except at the last level, nearest-neighbour upsampling with a convolution.
/// </summary>
internal sealed class ConditionUpBlock2D : Module
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Upsample2D>? upsamplers;

    // inChannels: channels of the last skip this block takes (the next shallower level's output); previousChannels:
    // channels coming up from the level below; layers: the down level's layers + 1; transformer: null for UpBlock2D.
    public ConditionUpBlock2D(int inChannels, int previousChannels, int outChannels, int layers, ResnetSettings resnet,
        TransformerSettings? transformer, bool upsample)
        : base(nameof(ConditionUpBlock2D))
    {
        if (transformer is not null) attentions = new ModuleList<Transformer2DModel>();
        for (int i = 0; i < layers; i++)
        {
            int skipChannels = i == layers - 1 ? inChannels : outChannels;
            int resnetIn = i == 0 ? previousChannels : outChannels;
            resnets.Add(resnet.Block(resnetIn + skipChannels, outChannels));
            if (transformer is not null) attentions!.Add(new Transformer2DModel(outChannels, transformer));
        }
        if (upsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels));
        RegisterComponents();
    }

    /// <summary>The number of down-path feature maps this block consumes (the last ones, deepest first).</summary>
    public int SkipCount => resnets.Count;

    // skips: this block's down-path feature maps in down-path order, the last used first; upsampleSize: the (height,
    // width) to upsample to instead of doubling, or null.
    public Tensor forward(Tensor x, IReadOnlyList<Tensor> skips, Tensor timeEmbedding, Tensor context, long[]? upsampleSize)
    {
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = cat([h, skips[skips.Count - 1 - i]], 1);
            h = resnets[i].forward(h, timeEmbedding);
            if (attentions is not null) h = attentions[i].forward(h, context);
        }
        if (upsamplers is not null) h = upsampleSize is null ? upsamplers[0].forward(h) : upsamplers[0].forward(h, upsampleSize);
        return h;
    }
}
