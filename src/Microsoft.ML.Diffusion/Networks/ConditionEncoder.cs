using Microsoft.ML.Diffusion.Conditioning;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// Turns a <see cref="ConditionBatch"/> into what the UNet consumes: an embedding added to the time
/// embedding (all kinds) and, for text, a token context for cross-attention. Rows marked null get a
/// learned null condition, which is what classifier-free guidance contrasts against.
/// </summary>
internal sealed class ConditionEncoder : nn.Module
{
    private readonly ConditioningOptions _options;
    private readonly Embedding? class_embedding;
    private readonly Linear? vector_projection;
    private readonly Parameter? null_embedding;
    private readonly TextEncoder? text_encoder;
    private readonly Parameter? null_context;
    private readonly Linear? pooled_projection;

    /// <summary>Creates the encoder for embeddings of width <paramref name="embeddingDim"/>.</summary>
    public ConditionEncoder(ConditioningOptions options, int embeddingDim) : base(nameof(ConditionEncoder))
    {
        _options = options;
        switch (options.Kind)
        {
            case ConditionKind.Class:
                class_embedding = Embedding(options.ClassCount + 1, embeddingDim);   // the extra row is the null class
                break;
            case ConditionKind.Vector:
                vector_projection = Linear(options.VectorSize, embeddingDim);
                null_embedding = Parameter(zeros(embeddingDim));
                break;
            case ConditionKind.Text:
                text_encoder = new TextEncoder(options.VocabularySize, options.MaxTokens, options.TextWidth, options.TextLayers, options.TextHeads);
                Tensor initial;
                using (NewDisposeScope()) initial = (randn(1, options.TextWidth) * 0.02).DetachFromDisposeScope();   // releases randn's temporary
                null_context = Parameter(initial);
                pooled_projection = Linear(options.TextWidth, embeddingDim);
                break;
        }
        RegisterComponents();
    }

    /// <summary>
    /// The embedding to add to the time embedding (N, E) and, for text, the context (N, L, W) with its
    /// attention mask (N, 1, 1, L).
    /// </summary>
    public (Tensor Embedding, Tensor? Context, Tensor? Keep) Encode(ConditionBatch condition)
    {
        if (condition.Kind != _options.Kind)
            throw new ArgumentException($"The model is conditioned on {_options.Kind}, but a {condition.Kind} condition was given.", nameof(condition));
        using var scope = NewDisposeScope();
        var values = condition.Values;
        var isNull = condition.NullMask;
        switch (_options.Kind)
        {
            case ConditionKind.Class:
            {
                var labels = isNull is null ? values : where(isNull, full_like(values, _options.ClassCount), values);
                var emb = class_embedding!.forward(labels);
                return (emb.MoveToOuterDisposeScope(), null, null);
            }
            case ConditionKind.Vector:
            {
                var emb = vector_projection!.forward(values);
                if (isNull is not null) emb = where(isNull.unsqueeze(1), null_embedding!.unsqueeze(0).expand_as(emb), emb);
                return (emb.MoveToOuterDisposeScope(), null, null);
            }
            case ConditionKind.Text:
            {
                long n = values.shape[0], l = values.shape[1];
                var keep = values.ne(0);
                keep[.., 0] = tensor(true);   // always attend to the first position, so no row is fully masked
                var context = text_encoder!.forward(values);
                if (isNull is not null)
                {
                    // Null rows: a single learned token, the rest masked out.
                    var nullContext = null_context!.unsqueeze(0).expand(n, l, -1);
                    context = where(isNull.view(-1, 1, 1), nullContext, context);
                    var first = zeros(l, dtype: ScalarType.Bool, device: keep.device);
                    first[0] = tensor(true);
                    keep = where(isNull.view(-1, 1), first.unsqueeze(0).expand(n, l), keep);
                }
                var weights = keep.to_type(context.dtype).unsqueeze(-1);
                var pooled = (context * weights).sum(1) / weights.sum(1);
                var emb = pooled_projection!.forward(pooled);
                return (emb.MoveToOuterDisposeScope(), context.MoveToOuterDisposeScope(), keep.view(n, 1, 1, l).MoveToOuterDisposeScope());
            }
            default:
                throw new InvalidOperationException("This model takes no condition.");
        }
    }
}
