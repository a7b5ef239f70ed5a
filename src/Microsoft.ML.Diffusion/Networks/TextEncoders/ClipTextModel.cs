using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextModel</c>, the text encoder of Stable Diffusion 1.x and 2.x, with transformers' parameter
/// names (text_model.embeddings…, text_model.encoder.layers.N…, text_model.final_layer_norm), so a diffusers
/// <c>text_encoder/model.safetensors</c> loads into it as it is (see <see cref="ClipTextEncoderFolder"/>). Token ids
/// (B, L ≤ max_position_embeddings) go in; the final-normed hidden state (B, L, hidden) comes out. Attention is causal
/// only, with no padding mask, as Stable Diffusion's pipelines run it (the end or pad tokens after a prompt are attended
/// to by nothing before them).
/// <para>
/// Clip skip (<see cref="SkipLayers"/>, diffusers' later <c>clip_skip</c>): with skip N the output is the hidden state N
/// layers before the last, then final_layer_norm. SD 2.x's "penultimate" is skip 1 of OpenCLIP's 24 layers, which
/// diffusers stores as a 23-layer model run with skip 0.
/// </para>
/// </summary>
internal sealed class ClipTextModel : Module<Tensor, Tensor>
{
    private readonly ClipTextTransformer text_model;
    private int _skipLayers;

    /// <summary>Builds the encoder with freshly initialised weights (from torch's global generator).</summary>
    public ClipTextModel(ClipTextConfig config) : base(nameof(ClipTextModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        text_model = new ClipTextTransformer(config);
        RegisterComponents();
    }

    public ClipTextConfig Config { get; }

    /// <summary>How many of the last layers <see cref="forward"/> leaves out (0 by default; less than the layer count).</summary>
    public int SkipLayers
    {
        get => _skipLayers;
        set
        {
            CheckSkip(value, nameof(SkipLayers));
            _skipLayers = value;
        }
    }

    /// <summary>Token ids (B, L), int64 (or int32), to the hidden state (B, L, hidden) after <see cref="SkipLayers"/> and final_layer_norm.</summary>
    public override Tensor forward(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var ids = CheckIds(inputIds);
        return text_model.Encode(ids, _skipLayers, finalLayerNorm: true, pooled: false).HiddenState.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The hidden state <paramref name="skipLayers"/> layers before the last, final-normed unless
    /// <paramref name="finalLayerNorm"/> is false (SDXL's hidden_states[-2] is skip 1 without it), and the pooled output
    /// of the whole model. Both are the caller's.
    /// </summary>
    public ClipTextOutput Encode(Tensor inputIds, int skipLayers = 0, bool finalLayerNorm = true)
    {
        CheckSkip(skipLayers, nameof(skipLayers));
        using var scope = NewDisposeScope();
        var ids = CheckIds(inputIds);
        var (hidden, pooled) = text_model.Encode(ids, skipLayers, finalLayerNorm, pooled: true);
        return new ClipTextOutput(hidden.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    private void CheckSkip(int skipLayers, string name)
    {
        if (skipLayers < 0 || skipLayers >= Config.NumHiddenLayers)
            throw new ArgumentOutOfRangeException(name, skipLayers, $"Layers to skip must be from 0 to {Config.NumHiddenLayers - 1} (the encoder has {Config.NumHiddenLayers}).");
    }

    private Tensor CheckIds(Tensor inputIds)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        if (inputIds.dim() != 2)
            throw new ArgumentException($"Token ids must be (batch, length); these have shape [{string.Join(", ", inputIds.shape)}].", nameof(inputIds));
        if (inputIds.dtype is not (ScalarType.Int64 or ScalarType.Int32))
            throw new ArgumentException($"Token ids must be int64 or int32; these are {inputIds.dtype}.", nameof(inputIds));
        long length = inputIds.shape[1];
        if (length < 1 || length > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"Token ids have length {length}; this encoder takes 1 to {Config.MaxPositionEmbeddings} tokens.", nameof(inputIds));
        var ids = inputIds.to(int64);
        long low = ids.min().item<long>(), high = ids.max().item<long>();
        if (low < 0 || high >= Config.VocabSize)
            throw new ArgumentException($"Token ids range from {low} to {high}; the vocabulary has ids 0 to {Config.VocabSize - 1}.", nameof(inputIds));
        return ids;
    }
}
