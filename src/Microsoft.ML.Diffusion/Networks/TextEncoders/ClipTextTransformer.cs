using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextTransformer</c> (a CLIPTextModel's <c>text_model</c>): embeddings, the causal encoder,
/// final_layer_norm, and the pooled output at each row's end token.
/// </summary>
internal sealed class ClipTextTransformer : Module<Tensor, Tensor>
{
    private readonly ClipTextEmbeddings embeddings;
    private readonly ClipEncoder encoder;
    private readonly LayerNorm final_layer_norm;
    private readonly int _eosTokenId;

    public ClipTextTransformer(ClipTextConfig config) : base(nameof(ClipTextTransformer))
    {
        _eosTokenId = config.EosTokenId;
        embeddings = new ClipTextEmbeddings(config);
        encoder = new ClipEncoder(config);
        final_layer_norm = ClipEncoderLayer.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds) => Encode(inputIds, 0, true, pooled: false).HiddenState;

    // skipLayers: how many of the last layers the hidden state leaves out; pooled: whether to compute the pooled output
    // (then every layer runs, whatever is skipped), else it is null.
    public ClipTextOutput Encode(Tensor inputIds, int skipLayers, bool finalLayerNorm, bool pooled)
    {
        using var scope = NewDisposeScope();
        int layers = encoder.LayerCount, kept = layers - skipLayers;
        var h = encoder.forward(embeddings.forward(inputIds), 0, kept);
        var hidden = finalLayerNorm ? final_layer_norm.forward(h) : h;
        if (!pooled) return new ClipTextOutput(hidden.MoveToOuterDisposeScope(), null!);

        var last = skipLayers == 0 && finalLayerNorm ? hidden : final_layer_norm.forward(encoder.forward(h, kept, layers));
        // transformers' rule: configs with eos_token_id 2 (all older ones) pool at each row's largest id, where CLIP's
        // end token sits; others at the first occurrence of eos_token_id.
        var positions = _eosTokenId == 2 ? inputIds.argmax(-1) : inputIds.eq(_eosTokenId).to(int32).argmax(-1);
        var index = positions.view(-1, 1, 1).expand(-1, 1, last.shape[2]);
        var pooledOutput = last.gather(1, index).squeeze(1);
        return new ClipTextOutput(hidden.MoveToOuterDisposeScope(), pooledOutput.MoveToOuterDisposeScope());
    }
}
