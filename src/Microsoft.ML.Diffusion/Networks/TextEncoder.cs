using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// A small transformer encoder for prompts, trained with the diffusion model: token and position
/// embeddings, then pre-norm self-attention + MLP layers. Padding (id 0) is masked out of attention.
/// </summary>
internal sealed class TextEncoder : Module<Tensor, Tensor>
{
    private readonly Embedding token_embedding;
    private readonly Parameter position_embedding;
    private readonly ModuleList<TextEncoderLayer> layers;
    private readonly LayerNorm final_norm;

    /// <summary>Creates the encoder.</summary>
    public TextEncoder(int vocabularySize, int maxTokens, int width, int layerCount, int heads) : base(nameof(TextEncoder))
    {
        token_embedding = Embedding(vocabularySize, width);
        Tensor initial;
        using (NewDisposeScope()) initial = (randn(maxTokens, width) * 0.02).DetachFromDisposeScope();   // releases randn's temporary
        position_embedding = Parameter(initial);
        layers = new ModuleList<TextEncoderLayer>();
        for (int i = 0; i < layerCount; i++) layers.Add(new TextEncoderLayer(width, heads));
        final_norm = NormLayers.LayerNorm(width);
        RegisterComponents();
    }

    /// <summary>Encodes token ids (N, L) as (N, L, width).</summary>
    public override Tensor forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        long length = tokens.shape[1];
        var mask = tokens.ne(0);
        mask[.., 0] = tensor(true);   // never a fully masked row
        var keep = mask.unsqueeze(1).unsqueeze(1);   // (N, 1, 1, L): attend to real tokens only
        var h = token_embedding.forward(tokens) + position_embedding.narrow(0, 0, length).unsqueeze(0);
        foreach (var layer in layers) h = layer.forward(h, keep);
        return final_norm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-norm transformer layer of the <see cref="TextEncoder"/>.</summary>
internal sealed class TextEncoderLayer : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Linear qkv;
    private readonly Linear projection;
    private readonly LayerNorm norm2;
    private readonly Linear mlp1;
    private readonly Linear mlp2;
    private readonly int _heads;

    /// <summary>Creates the layer.</summary>
    public TextEncoderLayer(int width, int heads) : base(nameof(TextEncoderLayer))
    {
        _heads = heads;
        norm1 = NormLayers.LayerNorm(width);
        qkv = Linear(width, 3 * width);
        projection = Linear(width, width);
        norm2 = NormLayers.LayerNorm(width);
        mlp1 = Linear(width, 4 * width);
        mlp2 = Linear(4 * width, width);
        RegisterComponents();
    }

    /// <summary>Applies the layer to x (N, L, W) with an attention mask (N, 1, 1, L).</summary>
    public override Tensor forward(Tensor x, Tensor keep)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], l = x.shape[1], w = x.shape[2];
        var parts = qkv.forward(norm1.forward(x)).view(n, l, 3, _heads, w / _heads).permute(2, 0, 3, 1, 4).unbind(0);
        var attended = functional.scaled_dot_product_attention(parts[0], parts[1], parts[2], attn_mask: keep);
        x = x + projection.forward(attended.transpose(1, 2).reshape(n, l, w));
        x = x + mlp2.forward(functional.gelu(mlp1.forward(norm2.forward(x))));
        return x.MoveToOuterDisposeScope();
    }
}
