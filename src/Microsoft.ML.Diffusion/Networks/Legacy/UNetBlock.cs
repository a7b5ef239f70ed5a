using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// One residual block, followed by self-attention at the resolutions that have it and, in
/// text-conditional models, cross-attention to the prompt there too.
/// </summary>
internal sealed class UNetBlock : nn.Module
{
    private readonly ResidualBlock residual;
    private readonly Module<Tensor, Tensor> attention;
    private readonly CrossAttention? cross_attention;

    /// <summary>Creates the block; <paramref name="withAttention"/> adds (self- and, for text, cross-) attention after it.</summary>
    public UNetBlock(int inChannels, int outChannels, int timeEmbeddingDim, UNetOptions options, bool withAttention)
        : base(nameof(UNetBlock))
    {
        residual = new ResidualBlock(inChannels, outChannels, timeEmbeddingDim, options.NormGroups, options.Dropout);
        attention = withAttention ? new SelfAttention(outChannels, options.AttentionHeads, options.NormGroups) : Identity();
        if (withAttention && options.Condition.Kind == Conditioning.ConditionKind.Text)
            cross_attention = new CrossAttention(outChannels, options.Condition.TextWidth, options.AttentionHeads, options.NormGroups);
        RegisterComponents();
    }

    /// <summary>Applies the block; <paramref name="context"/> and <paramref name="keep"/> are the prompt tokens and their mask, if any.</summary>
    public Tensor Forward(Tensor x, Tensor timeEmbedding, Tensor? context = null, Tensor? keep = null)
    {
        using var scope = NewDisposeScope();
        var h = attention.forward(residual.forward(x, timeEmbedding));
        if (cross_attention is not null)
        {
            if (context is null || keep is null) throw new ArgumentException("A text-conditional block needs the prompt context.", nameof(context));
            h = cross_attention.forward(h, context, keep);
        }
        return h.MoveToOuterDisposeScope();
    }
}
