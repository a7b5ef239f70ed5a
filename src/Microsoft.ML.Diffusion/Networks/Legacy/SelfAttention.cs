using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// Multi-head self-attention over the pixels of a feature map (DDPM's attention block at 16×16),
/// with GroupNorm in front and a residual connection around it.
/// </summary>
internal sealed class SelfAttention : Module<Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Conv2d qkv;
    private readonly Conv2d projection;
    private readonly int _heads;

    /// <summary>Creates attention over <paramref name="channels"/> channels with <paramref name="heads"/> heads.</summary>
    public SelfAttention(int channels, int heads, int groups) : base(nameof(SelfAttention))
    {
        _heads = heads;
        norm = NormLayers.GroupNorm(groups, channels);
        qkv = Conv2d(channels, 3 * channels, 1);
        projection = Conv2d(channels, channels, 1);
        RegisterComponents();
    }

    /// <summary>Applies attention to x (N, C, H, W).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        long headDim = c / _heads;
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        // (N, 3C, H, W) → three (N, heads, HW, headDim) tensors.
        var parts = qkv.call(norm.forward(x)).view(n, 3, _heads, headDim, h * w).permute(1, 0, 2, 4, 3).unbind(0);
        var attended = functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
        var merged = attended.permute(0, 1, 3, 2).reshape(n, c, h, w);
        return (x + projection.call(merged)).MoveToOuterDisposeScope();
    }
}
