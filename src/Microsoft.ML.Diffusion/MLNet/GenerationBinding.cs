using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// A sampling stage (<see cref="DiffusionSamplingTransformer"/>) bound to one input schema: where the seed comes
/// from, the output column's type and position, and how its values are made.
/// </summary>
internal sealed class GenerationBinding
{
    public GenerationBinding(DiffusionSamplingTransformer parent, DataViewSchema inputSchema)
    {
        Parent = parent;
        InputSchema = inputSchema;
        var options = parent.StageSettings;
        if (options.SeedColumnName is not null)
        {
            SeedColumn = inputSchema.GetColumnOrNull(options.SeedColumnName)
                ?? throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{options.SeedColumnName}' was not found in the input schema (columns: {string.Join(", ", inputSchema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
            if (!IsSeedType(SeedColumn.Value.Type))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Seed column '{options.SeedColumnName}' must hold integers (or whole-number Single/Double), but it is {SeedColumn.Value.Type}.");
        }

        var conditioning = parent.Model.NetworkOptions.Condition;
        if (conditioning.Kind == Conditioning.ConditionKind.Prompt && options.ConditionColumnName is null)
        {
            // A prompt model without a prompt column samples unconditionally (the empty prompt).
        }
        else if (conditioning.Kind == Conditioning.ConditionKind.None)
        {
            if (options.ConditionColumnName is not null)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Condition column '{options.ConditionColumnName}' was given, but the model is unconditional; it takes no prompt or condition.");
        }
        else
        {
            if (options.ConditionColumnName is null)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"The model is conditioned on {conditioning.Kind}; set ConditionColumnName to the column that holds each row's condition.");
            Condition = ConditionColumn.ForModel(inputSchema, options.ConditionColumnName, conditioning);
            ConditionIndex = inputSchema[Condition.Name].Index;
        }

        if (options.NegativePrompts is { } negative)
        {
            if (!parent.Model.TakesPrompts)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Negative prompt column '{negative}' was given, but the model takes no prompts.");
            var column = inputSchema.GetColumnOrNull(negative)
                ?? throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Negative prompt column '{negative}' was not found in the input schema (columns: {string.Join(", ", inputSchema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
            if (column.Type is not TextDataViewType)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Negative prompt column '{negative}' must hold text, but it is {column.Type}.");
            NegativePrompt = column;
        }
        var shape = parent.OutputShape;
        Channels = (int)shape[0];
        Height = (int)shape[1];
        Width = (int)shape[2];
        (Image, Mask) = parent.BindImageColumns(inputSchema, Channels, Height, Width);
        OutputType = options.OutputKind == GeneratedOutputKind.Image
            ? new ImageDataViewType(Height, Width)
            : new VectorDataViewType(NumberDataViewType.Single, Channels, Height, Width);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(options.OutputColumnName, OutputType);
        OutputSchema = builder.ToSchema();
        OutputIndex = inputSchema.Count;
    }

    public DiffusionSamplingTransformer Parent { get; }
    public DataViewSchema InputSchema { get; }
    public DataViewSchema OutputSchema { get; }
    public DataViewSchema.Column? SeedColumn { get; }
    public ConditionColumn? Condition { get; }
    public DataViewSchema.Column? NegativePrompt { get; }
    public ImageColumn? Image { get; }
    public MaskColumn? Mask { get; }
    public int ConditionIndex { get; } = -1;
    public DataViewType OutputType { get; }
    public int OutputIndex { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }

    public static bool IsSeedType(DataViewType type)
        => IntegerColumn.IsInteger(type) || type == NumberDataViewType.Single || type == NumberDataViewType.Double;

    /// <summary>Reads the seed of <paramref name="row"/>'s current position.</summary>
    public Func<long> CreateSeedReader(DataViewRow row)
    {
        long baseSeed = Parent.StageSettings.Seed;
        if (SeedColumn is null) return () => baseSeed + row.Position;
        var column = row.Schema[SeedColumn.Value.Index];
        string name = column.Name;
        var type = column.Type;
        if (IntegerColumn.IsInteger(type)) return IntegerColumn.CreateReader(row, column);
        if (type == NumberDataViewType.Single) return IntegerColumn.Reader<float>(row, column, v => WholeNumber(v, name, row));
        return IntegerColumn.Reader<double>(row, column, v => WholeNumber(v, name, row));
    }

    private static long WholeNumber(double v, string name, DataViewRow row)
    {
        if (!double.IsFinite(v) || Math.Floor(v) != v || Math.Abs(v) > 9e15)
            throw new InvalidOperationException($"Seed column '{name}' holds {v} at row {row.Position}; seeds must be whole numbers.");
        return (long)v;
    }

    /// <summary>A getter for the output column that takes the current row's planar pixels from <paramref name="pixels"/>.</summary>
    public Delegate MakeOutputGetter(Func<float[]> pixels)
    {
        int c = Channels, h = Height, w = Width;
        if (Parent.StageSettings.OutputKind == GeneratedOutputKind.Image)
        {
            ValueGetter<MLImage> image = (ref MLImage value) => value = ImagePixels.ToImage(pixels(), c, h, w);
            return image;
        }
        ValueGetter<VBuffer<float>> vector = (ref VBuffer<float> value) =>
        {
            var values = ImagePixels.ToBytesRange(pixels());
            var editor = VBufferEditor.Create(ref value, values.Length);
            values.CopyTo(editor.Values);
            value = editor.Commit();
        };
        return vector;
    }

    /// <summary>Columns the look-ahead reads: the seed, the condition, the image and the mask, where there are such columns.</summary>
    public IEnumerable<DataViewSchema.Column> GenerationInputs()
        => GenerationInputIndices().Distinct().Order().Select(i => InputSchema[i]);

    private IEnumerable<int> GenerationInputIndices()
    {
        if (SeedColumn is not null) yield return SeedColumn.Value.Index;
        if (ConditionIndex >= 0) yield return ConditionIndex;
        if (NegativePrompt is not null) yield return NegativePrompt.Value.Index;
        if (Image is not null) yield return InputSchema[Image.Name].Index;
        if (Mask is not null) yield return InputSchema[Mask.Name].Index;
    }

    /// <summary>Reads what the stage needs from <paramref name="row"/>'s current position.</summary>
    public Func<GenerationRow> CreateRowReader(DataViewRow row)
    {
        var seed = CreateSeedReader(row);
        var condition = Condition?.CreateReader(row);
        Action<Span<float>>? image = Image?.CreateReader(row);
        var mask = Mask?.CreateReader(row);
        var negative = NegativePrompt is { } n ? ConditionColumn.TextReader(row, n) : null;
        int length = Channels * Height * Width;
        return () =>
        {
            float[]? pixels = null;
            if (image is not null)
            {
                pixels = new float[length];
                image(pixels);
            }
            return new GenerationRow(seed(), condition?.Invoke(), pixels, mask?.Invoke(), negative?.Invoke());
        };
    }

    /// <summary>Input columns needed to produce the given output columns.</summary>
    public IEnumerable<DataViewSchema.Column> InputColumnsFor(IEnumerable<DataViewSchema.Column> outputColumns)
    {
        var needed = new HashSet<int>();
        foreach (var column in outputColumns)
        {
            if (column.Index < OutputIndex) needed.Add(column.Index);
            else
            {
                needed.UnionWith(GenerationInputIndices());
            }
        }
        return needed.OrderBy(i => i).Select(i => InputSchema[i]);
    }
}
