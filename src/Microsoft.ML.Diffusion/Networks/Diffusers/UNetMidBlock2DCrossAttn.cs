using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>UNetMidBlock2DCrossAttn</c> (one layer, as UNet2DConditionModel builds it): residual block,
/// cross-attention transformer, residual block; the residual blocks' outputs are divided by mid_block_scale_factor.
/// </summary>
internal sealed class UNetMidBlock2DCrossAttn : Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets = new();
    private readonly ModuleList<Transformer2DModel> attentions = new();

    public UNetMidBlock2DCrossAttn(int channels, ResnetSettings resnet, TransformerSettings transformer, double outputScale)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        resnets.Add(resnet.Block(channels, channels, outputScale));
        attentions.Add(new Transformer2DModel(channels, transformer));
        resnets.Add(resnet.Block(channels, channels, outputScale));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmbedding, Tensor context)
    {
        var h = resnets[0].forward(x, timeEmbedding);
        h = attentions[0].forward(h, context);
        return resnets[1].forward(h, timeEmbedding);
    }
}
