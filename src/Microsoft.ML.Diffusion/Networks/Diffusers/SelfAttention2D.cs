using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>Attention</c> as UNet2DModel's attention blocks use it: GroupNorm over the feature map, multi-head
/// self-attention over its positions (softmax in float32: the fused scaled_dot_product_attention in float32
/// networks), an output projection, the input added back, divided by the rescale factor. Parameter names (group_norm, to_q, to_k, to_v, to_out.0) are diffusers'.
/// </summary>
internal sealed class SelfAttention2D : Module<Tensor, Tensor>
{
    private readonly GroupNorm? group_norm;
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _rescale;

    // headDim: channels per head (diffusers' dim_head), heads = channels / headDim; groups: GroupNorm groups or null for
    // none; rescale: the output is divided by it (diffusers' rescale_output_factor).
    public SelfAttention2D(int channels, int headDim, int? groups, double eps, double rescale) : base(nameof(SelfAttention2D))
    {
        _heads = Math.Max(1, channels / headDim);
        _headDim = headDim;
        _rescale = rescale;
        int inner = _heads * headDim;
        if (groups is { } g) group_norm = NormLayers.GroupNorm(g, channels, eps);
        to_q = Linear(channels, inner);
        to_k = Linear(channels, inner);
        to_v = Linear(channels, inner);
        to_out = new ModuleList<Module<Tensor, Tensor>>(Linear(inner, channels), Dropout(0.0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], n = h * w;
        var normed = group_norm is null ? x : group_norm.forward(x);
        var tokens = normed.view(b, c, n).transpose(1, 2);   // (b, n, c)
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        Tensor Heads(Linear projection) => projection.call(tokens).view(b, n, _heads, _headDim).transpose(1, 2);   // (b, heads, n, d)
        var q = Heads(to_q);
        var k = Heads(to_k);
        var v = Heads(to_v);
        Tensor attended;
        if (q.dtype == float32)
        {
            // softmax(q·kᵀ/√d)·v, diffusers' math, to float32 rounding, in one fused kernel (the default scale is 1/√d).
            attended = functional.scaled_dot_product_attention(q, k, v);
        }
        else
        {
            var scores = q.matmul(k.transpose(-1, -2)) * (1.0 / Math.Sqrt(_headDim));
            attended = functional.softmax(scores.to(float32), -1).to(q.dtype).matmul(v);   // diffusers' upcast_softmax
        }
        attended = attended.transpose(1, 2).reshape(b, n, _heads * _headDim);
        var projected = to_out[0].call(attended);
        var y = projected.transpose(1, 2).reshape(b, c, h, w) + x;
        if (_rescale != 1.0) y = y / _rescale;
        return y.MoveToOuterDisposeScope();
    }
}
