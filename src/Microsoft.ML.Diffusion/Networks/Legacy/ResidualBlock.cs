using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// DDPM's residual block: GroupNorm → SiLU → 3×3 conv, plus a projection of the time embedding added
/// per channel, then GroupNorm → SiLU → dropout → 3×3 conv, and a skip (1×1 conv when widths differ).
/// </summary>
internal sealed class ResidualBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear time_projection;
    private readonly GroupNorm norm2;
    private readonly Dropout dropout;
    private readonly Conv2d conv2;
    private readonly Module<Tensor, Tensor> skip;

    /// <summary>Creates a block from <paramref name="inChannels"/> to <paramref name="outChannels"/>.</summary>
    public ResidualBlock(int inChannels, int outChannels, int timeEmbeddingDim, int groups, double dropoutRate)
        : base(nameof(ResidualBlock))
    {
        norm1 = NormLayers.GroupNorm(groups, inChannels);
        conv1 = Conv2d(inChannels, outChannels, 3, padding: 1);
        time_projection = Linear(timeEmbeddingDim, outChannels);
        norm2 = NormLayers.GroupNorm(groups, outChannels);
        dropout = Dropout(dropoutRate);
        conv2 = Conv2d(outChannels, outChannels, 3, padding: 1);
        skip = inChannels == outChannels ? Identity() : Conv2d(inChannels, outChannels, 1);
        RegisterComponents();
    }

    /// <summary>Applies the block to x (N, C, H, W) with the activated time embedding (N, D).</summary>
    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        using var scope = NewDisposeScope();
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var h = conv1.call(functional.silu(norm1.forward(x)));
        h = h + time_projection.call(timeEmbedding).unsqueeze(-1).unsqueeze(-1);
        h = conv2.call(dropout.forward(functional.silu(norm2.forward(h))));
        return (skip.call(x) + h).MoveToOuterDisposeScope();
    }
}
