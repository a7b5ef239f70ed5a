using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPAttention</c> as the text encoder uses it: multi-head self-attention with the causal mask (a
/// token sees itself and the tokens before it), scaled by 1/√(head width); q_proj, k_proj, v_proj, out_proj with biases.
/// </summary>
internal sealed class ClipAttention : Module<Tensor, Tensor>
{
    private readonly Linear q_proj;
    private readonly Linear k_proj;
    private readonly Linear v_proj;
    private readonly Linear out_proj;
    private readonly int _heads;

    public ClipAttention(ClipTextConfig config) : base(nameof(ClipAttention))
    {
        _heads = config.NumAttentionHeads;
        int width = config.HiddenSize;
        q_proj = Linear(width, width);
        k_proj = Linear(width, width);
        v_proj = Linear(width, width);
        out_proj = Linear(width, width);
        RegisterComponents();
    }

    /// <summary>(B, L, hidden) to (B, L, hidden).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], width = x.shape[2], headWidth = width / _heads;
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        Tensor Heads(Linear projection) => projection.call(x).view(b, n, _heads, headWidth).transpose(1, 2);   // (b, heads, n, d)
        var attended = functional.scaled_dot_product_attention(Heads(q_proj), Heads(k_proj), Heads(v_proj), null, 0.0, true);   // causal
        var y = out_proj.call(attended.transpose(1, 2).reshape(b, n, width));
        return y.MoveToOuterDisposeScope();
    }
}
