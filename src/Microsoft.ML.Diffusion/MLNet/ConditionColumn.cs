using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Conditioning;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// A condition column as the diffusion stages read it, and the <see cref="ConditioningOptions"/> it
/// implies: a key (from MapValueToKey) or integer column gives class conditioning; a known-size float
/// vector (FeaturizeText, OneHotEncoding…) gives vector conditioning; a vector of keys
/// (TokenizeIntoWords + MapValueToKey) gives text conditioning, one key per token.
/// </summary>
internal sealed class ConditionColumn
{
    private ConditionColumn(string name, DataViewType type, ConditioningOptions options)
    {
        Name = name;
        Type = type;
        Options = options;
    }

    public string Name { get; }
    public DataViewType Type { get; }
    public ConditioningOptions Options { get; }

    /// <summary>Infers the conditioning a training column implies.</summary>
    public static ConditionColumn ForTraining(DataViewSchema schema, string name, int? classCount, int maxTokens, int textWidth, int textLayers, int textHeads)
    {
        var column = Find(schema, name);
        var type = column.Type;
        ConditioningOptions options = type switch
        {
            KeyDataViewType key => new() { Kind = ConditionKind.Class, ClassCount = CheckedCount(key, name) },
            NumberDataViewType when IntegerColumn.IsInteger(type) => new() { Kind = ConditionKind.Class, ClassCount = classCount ?? throw new ArgumentOutOfRangeException(nameof(name), $"Condition column '{name}' holds integer class labels; set ClassCount (or convert it to a key column with MapValueToKey).") },
            VectorDataViewType { ItemType: NumberDataViewType } v when v.ItemType == NumberDataViewType.Single && v.IsKnownSize => new() { Kind = ConditionKind.Vector, VectorSize = v.Size, TextWidth = textWidth },
            VectorDataViewType { ItemType: KeyDataViewType k } => new() { Kind = ConditionKind.Text, VocabularySize = CheckedCount(k, name) + 1, MaxTokens = maxTokens, TextWidth = textWidth, TextLayers = textLayers, TextHeads = textHeads },
            _ => throw new ArgumentOutOfRangeException(nameof(name), $"Condition column '{name}' must be a key or integer column (classes), a known-size vector of Single (e.g. FeaturizeText) or a vector of keys (TokenizeIntoWords + MapValueToKey), but it is {type}."),
        };
        return new ConditionColumn(column.Name, type, options);
    }

    /// <summary>Checks that a generation-time column matches what the model was trained on.</summary>
    public static ConditionColumn ForModel(DataViewSchema schema, string name, ConditioningOptions model)
    {
        var column = Find(schema, name);
        var type = column.Type;
        string Expected() => model.Kind switch
        {
            ConditionKind.Class => $"a key column of {model.ClassCount} classes (or integers in [0, {model.ClassCount}))",
            ConditionKind.Vector => $"a vector of {model.VectorSize} Single values",
            ConditionKind.Prompt => "a text column of prompts",
            _ => $"a vector of keys (tokens) from a vocabulary of {model.VocabularySize - 1} words",
        };
        bool ok = model.Kind switch
        {
            ConditionKind.Class => (type is KeyDataViewType k && (int)k.Count == model.ClassCount) || (type is NumberDataViewType && IntegerColumn.IsInteger(type)),
            ConditionKind.Vector => type is VectorDataViewType v && v.ItemType == NumberDataViewType.Single && v.Size == model.VectorSize,
            ConditionKind.Text => type is VectorDataViewType { ItemType: KeyDataViewType tk } && (int)tk.Count + 1 == model.VocabularySize,
            ConditionKind.Prompt => type is TextDataViewType,
            _ => false,
        };
        if (!ok)
            throw new ArgumentOutOfRangeException(nameof(name), $"Condition column '{name}' is {type}, but the model was trained on {Expected()}. Use the same featurizing stages (saved in the training pipeline's zip) that produced its training condition.");
        return new ConditionColumn(column.Name, type, model);
    }

    private static DataViewSchema.Column Find(DataViewSchema schema, string name)
        => schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(nameof(name), $"Condition column '{name}' was not found in the input schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}).");

    private static int CheckedCount(KeyDataViewType key, string name)
        => key.Count is > 0 and < int.MaxValue ? (int)key.Count : throw new ArgumentOutOfRangeException(nameof(name), $"Condition column '{name}' is a key type with no known count.");

    /// <summary>
    /// A reader of the current row's condition: a class label (as long[1]), a vector (float[]) or token
    /// ids (long[MaxTokens], 0-padded). Bad values fail with the column and row named.
    /// </summary>
    public Func<object> CreateReader(DataViewRow row)
    {
        var column = row.Schema[Name];
        int classes = Options.ClassCount;
        switch (Options.Kind)
        {
            case ConditionKind.Class when Type is KeyDataViewType:
            {
                var getter = row.GetGetter<uint>(column);
                uint key = 0;
                return () =>
                {
                    getter(ref key);
                    if (key == 0) throw new InvalidOperationException($"Condition column '{Name}' has an unknown class at row {row.Position} (a value its key mapping has not seen).");
                    return new long[] { key - 1 };
                };
            }
            case ConditionKind.Class:
            {
                var convert = IntegerColumn.CreateReader(row, column);
                return () =>
                {
                    long label = convert();
                    if (label < 0 || label >= classes)
                        throw new InvalidOperationException($"Condition column '{Name}' has class {label} at row {row.Position}; the model knows classes 0 to {classes - 1}.");
                    return new long[] { label };
                };
            }
            case ConditionKind.Prompt:
                return TextReader(row, column);
            case ConditionKind.Vector:
            {
                var getter = row.GetGetter<VBuffer<float>>(column);
                VBuffer<float> buffer = default;
                return () =>
                {
                    getter(ref buffer);
                    var values = buffer.DenseValues().ToArray();
                    if (values.Any(v => !float.IsFinite(v)))
                        throw new InvalidOperationException($"Condition column '{Name}' has a NaN or infinite value at row {row.Position}.");
                    return values;
                };
            }
            default:
            {
                var getter = row.GetGetter<VBuffer<uint>>(column);
                VBuffer<uint> buffer = default;
                int max = Options.MaxTokens;
                return () =>
                {
                    getter(ref buffer);
                    var keys = buffer.DenseValues().Where(k => k != 0).ToArray();   // 0: a word the vocabulary has not seen
                    if (keys.Length == 0)
                        throw new InvalidOperationException($"Condition column '{Name}' has an empty prompt (no known words) at row {row.Position}.");
                    if (keys.Length > max)
                        throw new InvalidOperationException($"Condition column '{Name}' has a prompt of {keys.Length} tokens at row {row.Position}; the model takes at most {max}.");
                    var ids = new long[max];
                    for (int i = 0; i < keys.Length; i++) ids[i] = keys[i];
                    return ids;
                };
            }
        }
    }

    /// <summary>A reader of a text column's current value (a prompt), "" for a missing one.</summary>
    public static Func<string> TextReader(DataViewRow row, DataViewSchema.Column column)
    {
        var getter = row.GetGetter<ReadOnlyMemory<char>>(column);
        ReadOnlyMemory<char> text = default;
        return () =>
        {
            getter(ref text);
            return text.ToString();
        };
    }

    /// <summary>A condition batch from rows read by <see cref="CreateReader"/> (prompts are encoded by the model, not batched here).</summary>
    public ConditionBatch ToBatch(IReadOnlyList<object> rows)
    {
        using var scope = NewDisposeScope();
        switch (Options.Kind)
        {
            case ConditionKind.Prompt:
                throw new InvalidOperationException("Prompts are encoded by the model's text encoder, not batched as a condition.");
            case ConditionKind.Class:
                return ConditionBatch.Classes(tensor(rows.Select(r => ((long[])r)[0]).ToArray()));
            case ConditionKind.Vector:
            {
                var flat = rows.SelectMany(r => (float[])r).ToArray();
                return ConditionBatch.Vectors(tensor(flat, [rows.Count, Options.VectorSize]));
            }
            default:
            {
                var flat = rows.SelectMany(r => (long[])r).ToArray();
                return ConditionBatch.Tokens(tensor(flat, [rows.Count, Options.MaxTokens]));
            }
        }
    }
}
