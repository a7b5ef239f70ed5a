using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>Attention</c> as BasicTransformerBlock builds it: multi-head attention of tokens (b, n, query_dim) over
/// a context (b, m, cross_attention_dim), or over themselves when there is none. to_q, to_k and to_v have no bias,
/// to_out.0 has one; scores are scaled by 1/√dim_head. Parameter names are diffusers'.
/// </summary>
internal sealed class Attention : Module<Tensor, Tensor?, Tensor>
{
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly bool _upcast;

    // crossAttentionDim: the context's width, or null for self-attention; upcast: diffusers' upcast_attention.
    public Attention(int queryDim, int? crossAttentionDim, int heads, int headDim, double dropout, bool upcast) : base(nameof(Attention))
    {
        _heads = heads;
        _headDim = headDim;
        _upcast = upcast;
        int inner = heads * headDim;
        to_q = Linear(queryDim, inner, hasBias: false);
        to_k = Linear(crossAttentionDim ?? queryDim, inner, hasBias: false);
        to_v = Linear(crossAttentionDim ?? queryDim, inner, hasBias: false);
        to_out = new ModuleList<Module<Tensor, Tensor>>(Linear(inner, queryDim), Dropout(dropout));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var source = context ?? x;
        long b = x.shape[0], n = x.shape[1], m = source.shape[1];
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var q = to_q.call(x).view(b, n, _heads, _headDim).transpose(1, 2);   // (b, heads, n, d)
        var k = to_k.call(source).view(b, m, _heads, _headDim).transpose(1, 2);
        var v = to_v.call(source).view(b, m, _heads, _headDim).transpose(1, 2);
        Tensor attended;
        if (_upcast && q.dtype != float32)
        {
            // upcast_attention: scores and softmax in float32 (half-precision scores of large models overflow), the
            // probabilities back in the working precision, as diffusers' AttnProcessor computes them.
            var scores = q.to(float32).matmul(k.to(float32).transpose(-1, -2)) * (1.0 / Math.Sqrt(_headDim));
            attended = functional.softmax(scores, -1).to(q.dtype).matmul(v);
        }
        else
        {
            // Equals softmax(q·kᵀ/√d)·v, diffusers' math, to float32 rounding (the default scale is 1/√d).
            attended = functional.scaled_dot_product_attention(q, k, v);
        }
        var merged = attended.transpose(1, 2).reshape(b, n, _heads * _headDim);
        var y = to_out[1].forward(to_out[0].call(merged));
        return y.MoveToOuterDisposeScope();
    }
}
