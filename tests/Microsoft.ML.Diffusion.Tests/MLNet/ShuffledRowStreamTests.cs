using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet.Streaming;
using Microsoft.ML.Diffusion.Training;
using Microsoft.ML.Diffusion.MLNet;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>The streamed data order: what rows each epoch sees, and that a saved position continues it exactly.</summary>
public sealed class ShuffledRowStreamTests
{
    private sealed class Row
    {
        [VectorType(4)]
        public float[] Pixels { get; set; } = new float[4];
    }

    // Row i's pixels all hold i / 1000 (Symmetric range), so a batch says which rows it holds.
    private static IDataView Rows(int count) => new MLContext().Data.LoadFromEnumerable(
        Enumerable.Range(0, count).Select(i => new Row { Pixels = [i / 1000f, i / 1000f, i / 1000f, i / 1000f] }));

    private static ShuffledRowStream Stream(IDataView data, int batch, int capacity, StreamPosition? position = null)
        => new(data, ImageColumn.Resolve(data.Schema, "Pixels", 1, 2, PixelRange.Symmetric), null, batch, capacity, skipBadRows: false,
            position ?? StreamPosition.Start(42));

    private static int[] RowsOf(TrainingBatch batch)
        => Enumerable.Range(0, batch.Count).Select(i => (int)Math.Round(batch.Pixels[i * 4] * 1000)).ToArray();

    [Fact]
    public void DataThatFitsTheBufferIsCachedAndEachEpochIsAPermutation()
    {
        using var stream = Stream(Rows(30), batch: 5, capacity: 64);
        var rows = Enumerable.Range(0, 18).SelectMany(_ => RowsOf(stream.NextBatch(default))).ToArray();   // three epochs
        for (int epoch = 0; epoch < 3; epoch++)
            Assert.Equal(Enumerable.Range(0, 30), rows.Skip(epoch * 30).Take(30).Order());
        Assert.NotEqual(rows.Take(30), rows.Skip(30).Take(30));   // a new order each epoch
        Assert.NotEqual(Enumerable.Range(0, 30), rows.Take(30));
        Assert.Equal(30, stream.RowsRead);                        // read once, then kept
    }

    [Fact]
    public void AShuffleBufferSmallerThanTheDataUsesEveryRowAboutOncePerPass()
    {
        using var stream = Stream(Rows(50), batch: 5, capacity: 8);
        var rows = Enumerable.Range(0, 100).SelectMany(_ => RowsOf(stream.NextBatch(default))).ToArray();   // ten passes
        var counts = rows.GroupBy(r => r).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(50, counts.Count);
        Assert.All(counts.Values, c => Assert.InRange(c, 9, 11));
        Assert.Equal(507, stream.RowsRead);                       // 500 drawn plus the 7 left (the buffer refills before each draw)
        Assert.NotEqual(Enumerable.Range(0, 50), rows.Take(50));
    }

    [Theory]
    [InlineData(8)]     // shuffle buffer over passes
    [InlineData(64)]    // cached data set
    public void ASavedPositionContinuesTheSameSequence(int capacity)
    {
        var data = Rows(30);
        using var original = Stream(data, batch: 7, capacity);
        TrainingBatch last = null!;
        for (int i = 0; i < 9; i++) last = original.NextBatch(default);
        using var resumed = Stream(data, batch: 7, capacity, last.Position);
        for (int i = 0; i < 12; i++)
            Assert.Equal(RowsOf(original.NextBatch(default)), RowsOf(resumed.NextBatch(default)));
    }

    [Fact]
    public void TheSeedDecidesTheOrder()
    {
        var data = Rows(40);
        int[] Order(long seed)
        {
            using var s = Stream(data, 10, 16, StreamPosition.Start(seed));
            return Enumerable.Range(0, 8).SelectMany(_ => RowsOf(s.NextBatch(default))).ToArray();
        }
        Assert.Equal(Order(1), Order(1));
        Assert.NotEqual(Order(1), Order(2));
    }
}
