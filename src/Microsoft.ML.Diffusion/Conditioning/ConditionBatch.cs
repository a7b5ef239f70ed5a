using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Conditioning;

/// <summary>
/// The conditions of a batch, one per sample: class labels (N), vectors (N, D) or token ids (N, L),
/// plus an optional mask (N) of samples that get the learned null condition instead (classifier-free
/// guidance). Owns its tensors.
/// </summary>
public sealed class ConditionBatch : IDisposable
{
    private ConditionBatch(ConditionKind kind, Tensor values, Tensor? nullMask)
    {
        Kind = kind;
        Values = values;
        NullMask = nullMask;
    }

    /// <summary>The kind of condition.</summary>
    public ConditionKind Kind { get; }

    /// <summary>Labels (N, int64), vectors (N, D, float32) or token ids (N, L, int64).</summary>
    public Tensor Values { get; }

    /// <summary>True where a sample uses the null condition; null when none does.</summary>
    public Tensor? NullMask { get; }

    /// <summary>Batch size.</summary>
    public long Count => Values.shape[0];

    /// <summary>Class labels (N).</summary>
    public static ConditionBatch Classes(Tensor labels) => new(ConditionKind.Class, Own(labels, int64), null);

    /// <summary>Condition vectors (N, D).</summary>
    public static ConditionBatch Vectors(Tensor vectors) => new(ConditionKind.Vector, Own(vectors, float32), null);

    /// <summary>Token ids (N, L), 0 = padding; each row needs at least one token.</summary>
    public static ConditionBatch Tokens(Tensor tokens) => new(ConditionKind.Text, Own(tokens, int64), null);

    /// <summary>A text encoder's hidden states (N, L, D) for prompt-conditional models.</summary>
    public static ConditionBatch PromptStates(Tensor states) => new(ConditionKind.Prompt, Own(states, float32), null);

    // A private copy of the caller's tensor (the caller keeps ownership of theirs).
    private static Tensor Own(Tensor t, ScalarType type)
    {
        using var scope = NewDisposeScope();
        return t.to_type(type).clone().MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    private static Tensor Moved(Tensor t, Device device)
    {
        using var scope = NewDisposeScope();
        return (t.device == device ? t.clone() : t.to(device)).MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    /// <summary>
    /// Checks the batch against what a network takes — kind, class range, vector length, token range —
    /// and throws naming the problem (one host read; call it once per batch or data set, not per step).
    /// </summary>
    public void Validate(ConditioningOptions options)
    {
        if (options.Kind == ConditionKind.None) throw new ArgumentException("The model is unconditional; it takes no condition.");
        if (Kind != options.Kind) throw new ArgumentException($"The model is conditioned on {options.Kind}, but a {Kind} condition was given.");
        switch (Kind)
        {
            case ConditionKind.Class:
                if (Values.dim() != 1) throw new ArgumentException($"Class labels must be a vector (N), not [{string.Join(", ", Values.shape)}].");
                long min = Values.min().item<long>(), max = Values.max().item<long>();
                if (min < 0 || max >= options.ClassCount)
                    throw new ArgumentOutOfRangeException(nameof(Values), $"Class labels must lie in [0, {options.ClassCount}), but range over [{min}, {max}]; the model knows {options.ClassCount} classes.");
                break;
            case ConditionKind.Vector:
                if (Values.dim() != 2 || Values.shape[1] != options.VectorSize)
                    throw new ArgumentException($"Condition vectors must be (N, {options.VectorSize}), not [{string.Join(", ", Values.shape)}].");
                if (!Values.isfinite().all().item<bool>()) throw new ArgumentException("Condition vectors contain NaN or infinite values.");
                break;
            case ConditionKind.Prompt:
                if (Values.dim() != 3 || Values.shape[1] > options.MaxTokens || Values.shape[2] != options.TextWidth)
                    throw new ArgumentException($"Prompt states must be (N, L, {options.TextWidth}) with L ≤ {options.MaxTokens}, not [{string.Join(", ", Values.shape)}].");
                if (!Values.isfinite().all().item<bool>()) throw new ArgumentException("Prompt states contain NaN or infinite values.");
                break;
            case ConditionKind.Text:
                if (Values.dim() != 2 || Values.shape[1] > options.MaxTokens)
                    throw new ArgumentException($"Token ids must be (N, L) with L ≤ {options.MaxTokens}, not [{string.Join(", ", Values.shape)}].");
                long lo = Values.min().item<long>(), hi = Values.max().item<long>();
                if (lo < 0 || hi >= options.VocabularySize)
                    throw new ArgumentOutOfRangeException(nameof(Values), $"Token ids must lie in [0, {options.VocabularySize}), but range over [{lo}, {hi}].");
                break;
        }
    }

    /// <summary>The rows at <paramref name="indices"/>.</summary>
    public ConditionBatch Select(Tensor indices)
    {
        var idx = indices.to(Values.device);
        return new(Kind, Values.index_select(0, idx).DetachFromDisposeScope(), NullMask?.index_select(0, idx).DetachFromDisposeScope());
    }

    /// <summary>The <paramref name="length"/> rows from <paramref name="start"/>.</summary>
    public ConditionBatch Slice(long start, long length)
    {
        using var scope = NewDisposeScope();
        return new(Kind, Values.narrow(0, start, length).clone().MoveToOuterDisposeScope().DetachFromDisposeScope(),
            NullMask?.narrow(0, start, length).clone().MoveToOuterDisposeScope().DetachFromDisposeScope());
    }

    /// <summary>The same conditions with <paramref name="mask"/> (N, bool) rows set to null.</summary>
    public ConditionBatch WithNull(Tensor mask)
    {
        using var scope = NewDisposeScope();
        var combined = (NullMask is null ? mask.to_type(ScalarType.Bool).clone() : NullMask.logical_or(mask)).MoveToOuterDisposeScope();
        return new(Kind, Moved(Values, Values.device), combined.DetachFromDisposeScope());
    }

    /// <summary>Every row set to the null condition (the unconditional half of guidance).</summary>
    public ConditionBatch AllNull() => WithNull(ones(Count, dtype: ScalarType.Bool, device: Values.device));

    /// <summary>This batch followed by <paramref name="other"/> (for one forward pass over both halves of guidance).</summary>
    public ConditionBatch Concat(ConditionBatch other)
    {
        if (other.Kind != Kind) throw new ArgumentException("Conditions of different kinds cannot be concatenated.", nameof(other));
        using var scope = NewDisposeScope();
        var values = cat([Values, other.Values], 0);
        Tensor? mask = null;
        if (NullMask is not null || other.NullMask is not null)
        {
            var a = NullMask ?? zeros(Count, dtype: ScalarType.Bool, device: Values.device);
            var b = other.NullMask ?? zeros(other.Count, dtype: ScalarType.Bool, device: Values.device);
            mask = cat([a, b], 0);
        }
        return new(Kind, values.DetachFromDisposeScope(), mask?.DetachFromDisposeScope());
    }

    /// <summary>The batch on <paramref name="device"/>.</summary>
    public ConditionBatch To(Device device)
        => new(Kind, Moved(Values, device), NullMask is null ? null : Moved(NullMask, device));

    /// <inheritdoc/>
    public void Dispose()
    {
        Values.Dispose();
        NullMask?.Dispose();
    }
}
