using Microsoft.ML.Diffusion.Conditioning;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The library's own condition encoder in front of a <see cref="UNet2DConditionModel"/> trained here: it turns a text
/// or vector condition into the <c>encoder_hidden_states</c> (N, L, TextWidth) the UNet's cross-attention reads. Text:
/// the small <see cref="TextEncoder"/>'s states of every position, padding included (the UNet reads no mask, as Stable
/// Diffusion reads CLIP's states); a vector: one token, its linear projection. Null rows read a learned null token in
/// every position, which attention reads as that one token: the null condition classifier-free guidance contrasts with.
/// </summary>
internal sealed class ConditionContextEncoder : Module
{
    private readonly ConditioningOptions _options;
    private readonly TextEncoder? text_encoder;
    private readonly Linear? vector_projection;
    private readonly Parameter null_context;

    /// <summary>Creates the encoder (outside any dispose scope: an Embedding's weight created inside one drops out of the parameters).</summary>
    public ConditionContextEncoder(ConditioningOptions options) : base(nameof(ConditionContextEncoder))
    {
        _options = options;
        switch (options.Kind)
        {
            case ConditionKind.Text:
                text_encoder = new TextEncoder(options.VocabularySize, options.MaxTokens, options.TextWidth, options.TextLayers, options.TextHeads);
                break;
            case ConditionKind.Vector:
                vector_projection = Linear(options.VectorSize, options.TextWidth);
                break;
            default:
                throw new ArgumentException($"The condition encoder takes text or vector conditions, not {options.Kind}.", nameof(options));
        }
        Tensor initial;
        using (NewDisposeScope()) initial = (randn(1, options.TextWidth) * 0.02).DetachFromDisposeScope();   // releases randn's temporary
        null_context = Parameter(initial);
        RegisterComponents();
    }

    /// <summary>The width of the states, the UNet's cross_attention_dim.</summary>
    public int Width => _options.TextWidth;

    /// <summary>
    /// The states for <paramref name="condition"/> (N, L, Width): L is the prompt's length for text and 1 for a vector.
    /// No condition gives <paramref name="count"/> null rows on <paramref name="device"/>.
    /// </summary>
    public Tensor Encode(ConditionBatch? condition, long count, Device device)
    {
        if (condition is not null && condition.Kind != _options.Kind)
            throw new ArgumentException($"The model is conditioned on {_options.Kind}, but a {condition.Kind} condition was given.", nameof(condition));
        using var scope = NewDisposeScope();
        if (condition is null)
        {
            // One null token per row: attention reads a row of null tokens as that one token, whatever its length.
            return null_context.unsqueeze(0).expand(count, 1, -1).to(device).contiguous().MoveToOuterDisposeScope();
        }
        var context = text_encoder is not null
            ? text_encoder.forward(condition.Values)
            : vector_projection!.forward(condition.Values).unsqueeze(1);
        if (condition.NullMask is { } isNull)
            context = where(isNull.view(-1, 1, 1), null_context.unsqueeze(0).expand_as(context), context);
        return context.MoveToOuterDisposeScope();
    }
}
