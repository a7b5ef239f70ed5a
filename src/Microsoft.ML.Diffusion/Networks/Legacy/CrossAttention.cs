using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// Cross-attention from the pixels of a feature map (queries) to the tokens of a text context (keys
/// and values), with GroupNorm in front and a residual connection: how the prompt steers the UNet.
/// </summary>
internal sealed class CrossAttention : Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Conv2d query;
    private readonly Linear key_value;
    private readonly Conv2d projection;
    private readonly int _heads;

    /// <summary>Creates cross-attention from <paramref name="channels"/> channels to a context of width <paramref name="contextWidth"/>.</summary>
    public CrossAttention(int channels, int contextWidth, int heads, int groups) : base(nameof(CrossAttention))
    {
        _heads = heads;
        norm = NormLayers.GroupNorm(groups, channels);
        query = Conv2d(channels, channels, 1);
        key_value = Linear(contextWidth, 2 * channels);
        projection = Conv2d(channels, channels, 1);
        RegisterComponents();
    }

    /// <summary>Applies attention of x (N, C, H, W) to context (N, L, W) where keep (N, 1, 1, L) is true.</summary>
    public override Tensor forward(Tensor x, Tensor context, Tensor keep)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], l = context.shape[1];
        long headDim = c / _heads;
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var q = query.call(norm.forward(x)).view(n, _heads, headDim, h * w).transpose(2, 3);
        var kv = key_value.call(context).view(n, l, 2, _heads, headDim).permute(2, 0, 3, 1, 4).unbind(0);
        var attended = functional.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask: keep);
        var merged = attended.transpose(2, 3).reshape(n, c, h, w);
        return (x + projection.call(merged)).MoveToOuterDisposeScope();
    }
}
