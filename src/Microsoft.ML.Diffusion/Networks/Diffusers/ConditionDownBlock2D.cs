using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>CrossAttnDownBlock2D</c> and <c>DownBlock2D</c> as UNet2DConditionModel builds them: residual blocks
/// (each followed by a cross-attention transformer in the CrossAttn variant) and, except at the last level, a stride-2
/// downsampling. Returns the output and every intermediate feature map the up path concatenates.
/// </summary>
internal sealed class ConditionDownBlock2D : Module
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Downsample2D>? downsamplers;

    // transformer: the level's cross-attention settings, or null for a plain DownBlock2D.
    public ConditionDownBlock2D(int inChannels, int outChannels, int layers, ResnetSettings resnet, TransformerSettings? transformer,
        bool downsample, int downsamplePadding)
        : base(nameof(ConditionDownBlock2D))
    {
        if (transformer is not null) attentions = new ModuleList<Transformer2DModel>();
        for (int i = 0; i < layers; i++)
        {
            resnets.Add(resnet.Block(i == 0 ? inChannels : outChannels, outChannels));
            if (transformer is not null) attentions!.Add(new Transformer2DModel(outChannels, transformer));
        }
        if (downsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, downsamplePadding));
        RegisterComponents();
    }

    public (Tensor Output, Tensor[] Skips) forward(Tensor x, Tensor timeEmbedding, Tensor context)
    {
        var skips = new List<Tensor>();
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            h = resnets[i].forward(h, timeEmbedding);
            if (attentions is not null) h = attentions[i].forward(h, context);
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
