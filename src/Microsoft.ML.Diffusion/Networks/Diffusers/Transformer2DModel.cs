using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>Transformer2DModel</c> over a feature map (its continuous-input form, the one UNets use): GroupNorm
/// (epsilon 1e-6, whatever the UNet's norm_eps), proj_in (a 1×1 convolution, or a Linear on the tokens with
/// use_linear_projection as SD 2.x), the transformer blocks on the h·w tokens, proj_out likewise, plus the input.
/// </summary>
internal sealed class Transformer2DModel : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Module<Tensor, Tensor> proj_in;
    private readonly ModuleList<BasicTransformerBlock> transformer_blocks = new();
    private readonly Module<Tensor, Tensor> proj_out;
    private readonly bool _linear;
    private readonly int _inner;

    public Transformer2DModel(int channels, TransformerSettings s) : base(nameof(Transformer2DModel))
    {
        int headDim = channels / s.Heads;   // diffusers' out_channels // num_attention_heads
        _inner = s.Heads * headDim;
        _linear = s.UseLinearProjection;
        norm = NormLayers.GroupNorm(s.Groups, channels, 1e-6);
        proj_in = _linear ? Linear(channels, _inner) : Conv2d(channels, _inner, 1);
        for (int i = 0; i < s.Layers; i++)
            transformer_blocks.Add(new BasicTransformerBlock(_inner, s.Heads, headDim, s.CrossAttentionDim, s.OnlyCrossAttention, s.UpcastAttention, dropout: 0.0));
        proj_out = _linear ? Linear(_inner, channels) : Conv2d(_inner, channels, 1);
        RegisterComponents();
    }

    // x: (b, c, h, w); context: (b, m, cross_attention_dim).
    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], height = x.shape[2], width = x.shape[3];
        var h = norm.forward(x);
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        h = _linear
            ? proj_in.call(h.permute(0, 2, 3, 1).reshape(b, height * width, c))
            : proj_in.call(h).permute(0, 2, 3, 1).reshape(b, height * width, _inner);
        foreach (var block in transformer_blocks) h = block.forward(h, context);
        h = _linear
            ? proj_out.call(h).reshape(b, height, width, c).permute(0, 3, 1, 2)
            : proj_out.call(h.reshape(b, height, width, _inner).permute(0, 3, 1, 2).contiguous());
        return (h + x).MoveToOuterDisposeScope();
    }
}
