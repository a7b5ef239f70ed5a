using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextEmbeddings</c>: each token's embedding plus its position's (token_embedding.weight,
/// position_embedding.weight). Positions are 0, 1, … along the sequence; the position_ids buffer older files hold is
/// that range and is not kept.
/// </summary>
internal sealed class ClipTextEmbeddings : Module<Tensor, Tensor>
{
    private readonly TableEmbedding token_embedding;
    private readonly TableEmbedding position_embedding;

    public ClipTextEmbeddings(ClipTextConfig config) : base(nameof(ClipTextEmbeddings))
    {
        token_embedding = new TableEmbedding(config.VocabSize, config.HiddenSize);
        position_embedding = new TableEmbedding(config.MaxPositionEmbeddings, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>Token ids (B, L), int64, to (B, L, hidden).</summary>
    public override Tensor forward(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var positions = arange(inputIds.shape[1], dtype: int64, device: inputIds.device);
        var h = token_embedding.forward(inputIds) + position_embedding.forward(positions).unsqueeze(0);
        return h.MoveToOuterDisposeScope();
    }

    // nn.Embedding's lookup with a weight that outlives a construction dispose scope the caller may hold (TorchSharp's
    // Embedding registers its weight in that scope). Initialised as transformers does (normal, std 0.02).
    private sealed class TableEmbedding : Module<Tensor, Tensor>
    {
        private readonly Parameter weight;

        public TableEmbedding(int rows, int width) : base(nameof(TableEmbedding))
        {
            using (NewDisposeScope())
                weight = (Parameter)new Parameter((randn(rows, width) * 0.02).DetachFromDisposeScope()).DetachFromDisposeScope();
            RegisterComponents();
        }

        public override Tensor forward(Tensor ids)
        {
            using var scope = NewDisposeScope();
            var rows = weight.index_select(0, ids.reshape(-1));
            return rows.view([.. ids.shape, weight.shape[1]]).MoveToOuterDisposeScope();
        }
    }
}
