using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>
/// One pass over the training view: a row cursor and the readers of its image and condition columns.
/// A row that cannot be read (an unreadable file, a wrong size, NaN pixels, a bad condition) fails with
/// its row number and the row's text columns (e.g. the image path), so the user can find it.
/// </summary>
internal sealed class TrainingRowReader : IDisposable
{
    private readonly DataViewRowCursor _cursor;
    private readonly Action<Span<float>> _readImage;
    private readonly Func<object>? _readCondition;
    private readonly (string Name, ValueGetter<ReadOnlyMemory<char>> Get)[] _labels;

    public TrainingRowReader(IDataView data, ImageColumn image, ConditionColumn? condition)
    {
        var schema = data.Schema;
        var needed = new List<DataViewSchema.Column> { schema[image.Name] };
        if (condition is not null) needed.Add(schema[condition.Name]);
        // Text columns (paths, names) cost little to read and identify a bad row in the error.
        var text = schema.Where(c => !c.IsHidden && c.Type is TextDataViewType && !needed.Contains(c)).Take(4).ToArray();
        _cursor = data.GetRowCursor(needed.Concat(text));
        _readImage = image.CreateReader(_cursor);
        _readCondition = condition?.CreateReader(_cursor);
        _labels = text.Select(c => (c.Name, _cursor.GetGetter<ReadOnlyMemory<char>>(c))).ToArray();
    }

    /// <summary>The number of the row <see cref="MoveNext"/> last reached (0-based).</summary>
    public long Row => _cursor.Position;

    public bool MoveNext() => _cursor.MoveNext();

    /// <summary>Reads the current row's pixels (into <paramref name="pixels"/>) and condition, or returns why it cannot be used.</summary>
    public BadRowException? TryRead(Span<float> pixels, out object? condition)
    {
        condition = null;
        try
        {
            _readImage(pixels);
            condition = _readCondition?.Invoke();
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new BadRowException(Row, Describe(), e);
        }
    }

    private string Describe()
    {
        var parts = new List<string>();
        foreach (var (name, get) in _labels)
        {
            try
            {
                ReadOnlyMemory<char> value = default;
                get(ref value);
                parts.Add($"{name} '{value}'");
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The label is only for the message; the row's real error follows.
            }
        }
        return string.Join(", ", parts);
    }

    public void Dispose() => _cursor.Dispose();
}
