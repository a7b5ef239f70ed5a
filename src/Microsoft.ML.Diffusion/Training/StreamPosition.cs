namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// Where a streamed training run stands in its data, as saved in the training state: the pass over the
/// view and the rows read in it, the shuffle generator, which rows the shuffle buffer holds, and (once
/// the data set has proved to fit the buffer) the permutation being walked. Row numbers are positions in
/// one pass over the view.
/// </summary>
internal sealed record StreamPosition
{
    /// <summary>Passes over the view started so far (0 before the first row is read).</summary>
    public long Pass { get; init; }

    /// <summary>Rows of the current pass read (and used or skipped) so far.</summary>
    public long RowsIntoPass { get; init; }

    /// <summary>Rows in one pass, known once the first pass has ended.</summary>
    public long? RowsPerPass { get; init; }

    /// <summary>The shuffle generator's state.</summary>
    public ulong Random { get; init; }

    /// <summary>The rows in the shuffle buffer, slot by slot (in cached mode: every usable row, in view order).</summary>
    public long[] Buffer { get; init; } = [];

    /// <summary>True once the whole data set is held in the buffer and each epoch walks a permutation of it.</summary>
    public bool Cached { get; init; }

    /// <summary>The current epoch's permutation of buffer slots (cached mode).</summary>
    public int[]? Order { get; init; }

    /// <summary>How far into <see cref="Order"/> the next row is.</summary>
    public int OrderPosition { get; init; }

    /// <summary>Rows skipped as unreadable so far.</summary>
    public long SkippedRows { get; init; }

    /// <summary>The first skipped row numbers (at most 10), for the report.</summary>
    public long[] FirstSkippedRows { get; init; } = [];

    public static StreamPosition Start(long seed) => new() { Random = unchecked((ulong)seed) };
}
