using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPEncoderLayer</c>, a pre-norm transformer block: x + self_attn(layer_norm1(x)), then
/// + mlp(layer_norm2(·)). (OpenCLIP's resblock: ln_1, attn, ln_2, mlp.c_fc / c_proj.)
/// </summary>
internal sealed class ClipEncoderLayer : Module<Tensor, Tensor>
{
    private readonly LayerNorm layer_norm1;
    private readonly ClipAttention self_attn;
    private readonly LayerNorm layer_norm2;
    private readonly ClipMlp mlp;

    public ClipEncoderLayer(ClipTextConfig config) : base(nameof(ClipEncoderLayer))
    {
        layer_norm1 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        self_attn = new ClipAttention(config);
        layer_norm2 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        mlp = new ClipMlp(config);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.forward(layer_norm1.forward(x));
        h = h + mlp.forward(layer_norm2.forward(h));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>A LayerNorm with the given epsilon and its affine parameters set to the identity (see <see cref="NormLayers"/>).</summary>
    internal static LayerNorm LayerNorm(int features, double eps)
    {
        var norm = nn.LayerNorm(features, eps);
        // The scope releases the wrappers that fill_/zero_ return.
        using (NewDisposeScope())
        using (no_grad())
        {
            norm.weight!.fill_(1.0);
            norm.bias!.zero_();
        }
        return norm;
    }
}
