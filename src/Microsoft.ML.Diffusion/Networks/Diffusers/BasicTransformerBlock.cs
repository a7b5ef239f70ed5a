using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>BasicTransformerBlock</c> as Stable Diffusion uses it (LayerNorms, no adaptive norms): self-attention
/// (norm1, attn1), cross-attention to the text (norm2, attn2), GEGLU feed-forward (norm3, ff), each added to its input.
/// With only_cross_attention, attn1 attends to the text as well.
/// </summary>
internal sealed class BasicTransformerBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn1;
    private readonly LayerNorm norm2;
    private readonly Attention attn2;
    private readonly LayerNorm norm3;
    private readonly FeedForward ff;
    private readonly bool _onlyCrossAttention;

    public BasicTransformerBlock(int dim, int heads, int headDim, int crossAttentionDim, bool onlyCrossAttention, bool upcast, double dropout)
        : base(nameof(BasicTransformerBlock))
    {
        _onlyCrossAttention = onlyCrossAttention;
        norm1 = NormLayers.LayerNorm(dim);
        attn1 = new Attention(dim, onlyCrossAttention ? crossAttentionDim : null, heads, headDim, dropout, upcast);
        norm2 = NormLayers.LayerNorm(dim);
        attn2 = new Attention(dim, crossAttentionDim, heads, headDim, dropout, upcast);
        norm3 = NormLayers.LayerNorm(dim);
        ff = new FeedForward(dim, dropout);
        RegisterComponents();
    }

    // x: (b, n, dim) tokens; context: (b, m, cross_attention_dim) text embeddings.
    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        var h = attn1.forward(norm1.forward(x), _onlyCrossAttention ? context : null) + x;
        h = attn2.forward(norm2.forward(h), context) + h;
        h = ff.forward(norm3.forward(h)) + h;
        return h.MoveToOuterDisposeScope();
    }
}
