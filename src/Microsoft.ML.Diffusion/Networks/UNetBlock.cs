using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>One residual block, followed by self-attention at the resolutions that have it.</summary>
public sealed class UNetBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly ResidualBlock residual;
    private readonly Module<Tensor, Tensor> attention;

    /// <summary>Creates the block; <paramref name="withAttention"/> adds self-attention after it.</summary>
    public UNetBlock(int inChannels, int outChannels, int timeEmbeddingDim, UNetOptions options, bool withAttention)
        : base(nameof(UNetBlock))
    {
        residual = new ResidualBlock(inChannels, outChannels, timeEmbeddingDim, options.NormGroups, options.Dropout);
        attention = withAttention ? new SelfAttention(outChannels, options.AttentionHeads, options.NormGroups) : Identity();
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        using var scope = NewDisposeScope();
        return attention.forward(residual.forward(x, timeEmbedding)).MoveToOuterDisposeScope();
    }
}
