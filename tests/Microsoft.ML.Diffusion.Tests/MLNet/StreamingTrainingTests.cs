using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Training;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>TrainDiffusion streaming batches from row cursors: bounded reading, exact resume, bad rows, odd views.</summary>
public sealed class StreamingTrainingTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-stream-").FullName;

    private sealed class PixelRow
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = new float[64];
    }

    // A view whose rows are made as a cursor reaches them; `made` counts them. `rowsPerPass` may change between passes.
    private static IDataView Lazy(MLContext ml, Func<int, long> rowsPerPass, StrongBox<long> made)
    {
        int pass = 0;
        IEnumerable<PixelRow> Rows()
        {
            long count = rowsPerPass(pass++);
            for (long i = 0; i < count; i++)
            {
                Interlocked.Increment(ref made.Value);
                var pixels = new float[64];
                for (int p = 0; p < 64; p++) pixels[p] = (float)((i * 37 + p * 11) % 256);
                yield return new PixelRow { Pixels = pixels };
            }
        }
        return ml.Data.LoadFromEnumerable(new Repeatable<PixelRow>(Rows));
    }

    // An IEnumerable that is not a collection, so the view cannot know its row count.
    private sealed class Repeatable<T>(Func<IEnumerable<T>> make) : IEnumerable<T>
    {
        public IEnumerator<T> GetEnumerator() => make().GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    public sealed class StrongBox<T> { public T Value = default!; }

    private static DiffusionTrainingOptions Tiny8(int steps) => new()
    {
        ImageColumnName = "Pixels",
        ImageChannels = 1,
        BaseChannels = 16,
        ChannelMultipliers = [1, 2],
        AttentionResolutions = [4],
        TrainingSteps = steps,
        BatchSize = 4,
        WarmupSteps = 2,
        EmaDecay = 0.9,
        Seed = 3,
        Device = "cpu",
        ReportEvery = 1,
    };

    private (MLContext ml, IDataView data, string images) ShapeFolder(int count)
    {
        var ml = new MLContext(seed: 1);
        string images = Path.Combine(_folder, "images");
        var paths = MLNetTestData.WriteShapeImages(images, count);
        return (ml, ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { Path = Path.GetFileName(p) }).ToList()), images);
    }

    private static IEstimator<ITransformer> Pipeline(MLContext ml, string images, DiffusionTrainingOptions options)
        => ml.Transforms.LoadImages("Image", images, "Path").Append(ml.Transforms.ResizeImages("Image", 16, 16)).Append(ml.Transforms.TrainDiffusion(options));

    private static float[] Weights(ITransformer model)
        => DiffusionTrainingTransformer.FindModel(model).Network.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();

    [Fact]
    public void RowsAreReadAsTrainingNeedsThemNotAllFirst()
    {
        var ml = new MLContext(seed: 1);
        var made = new StrongBox<long>();
        var data = Lazy(ml, _ => 100_000, made);   // rows of unknown count: Auto streams them
        var options = Tiny8(steps: 5);
        options.ShuffleBufferSize = 16;
        var reports = new List<TrainingProgress>();
        options.Progress = reports.Add;

        ml.Transforms.TrainDiffusion(options).Fit(data);

        Assert.Equal(5, reports.Count);
        // The buffer (16), the 5 batches trained on and at most the prefetched ones (4 + 1 being made), 4 rows each.
        Assert.InRange(made.Value, 16 + 5 * 4, 16 + 10 * 4);
        Assert.All(reports, r => Assert.InRange(r.DataWaitFraction, 0, 1));
        Assert.All(reports, r => Assert.True(r.ImagesPerSecond > 0));
    }

    [Theory]
    [InlineData(10)]     // a shuffle buffer smaller than the data: rows are read again each pass
    [InlineData(null)]   // the default buffer holds all 32 images: they are kept after the first pass
    public void AnInterruptedAndResumedStreamedRunEqualsAnUninterruptedOne(int? buffer)
    {
        var (ml, data, images) = ShapeFolder(32);
        DiffusionTrainingOptions Options()
        {
            var o = MLNetTestData.TinyTraining(steps: 12);
            o.DataLoading = TrainingDataLoading.Streaming;
            o.ShuffleBufferSize = buffer;
            o.BatchSize = 12;   // 32 rows are not a whole number of batches: batches straddle passes
            return o;
        }
        var straight = Weights(Pipeline(ml, images, Options()).Fit(data));

        string checkpoint = Path.Combine(_folder, "resume.zip");
        using var cts = new CancellationTokenSource();
        var first = Options();
        first.CheckpointPath = checkpoint;
        first.CancellationToken = cts.Token;
        first.ReportEvery = 1;
        first.Progress = p => { if (p.Step == 7) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => Pipeline(new MLContext(seed: 1), images, first).Fit(data));

        var second = Options();
        second.CheckpointPath = checkpoint;
        var steps = new List<int>();
        second.ReportEvery = 1;
        second.Progress = p => steps.Add(p.Step);
        var resumed = Weights(Pipeline(new MLContext(seed: 1), images, second).Fit(data));

        Assert.Equal(8, steps[0]);
        Assert.Equal(straight, resumed);
    }

    [Fact]
    public void AutoReadsSmallDataIntoMemoryAsInMemoryDoesAndStreamingDrawsItsOwnOrder()
    {
        var (ml, data, images) = ShapeFolder(24);
        float[] Train(TrainingDataLoading loading)
        {
            var o = MLNetTestData.TinyTraining(steps: 6);
            o.DataLoading = loading;
            return Weights(Pipeline(new MLContext(seed: 1), images, o).Fit(data));
        }
        var auto = Train(TrainingDataLoading.Auto);
        Assert.Equal(Train(TrainingDataLoading.InMemory), auto);
        Assert.NotEqual(Train(TrainingDataLoading.Streaming), auto);
    }

    [Fact]
    public void ACorruptImageMidRunStopsNamingItsFileAndRowAndKeepsTheTrainingState()
    {
        var (ml, data, images) = ShapeFolder(32);
        File.WriteAllText(Path.Combine(images, "shape020.png"), "not a PNG: the disk was full");
        string checkpoint = Path.Combine(_folder, "state.zip");
        var options = MLNetTestData.TinyTraining(steps: 20);
        options.DataLoading = TrainingDataLoading.Streaming;
        options.ShuffleBufferSize = 4;
        options.BatchSize = 4;
        options.CheckpointPath = checkpoint;
        options.CheckpointEvery = 1000;   // only the error writes it

        var error = Assert.Throws<UnreadableTrainingRowException>(() => Pipeline(ml, images, options).Fit(data));
        Assert.Contains("row 20", error.Message);
        Assert.Contains("shape020.png", error.Message);
        Assert.Contains("SkipBadRows", error.Message);
        Assert.True(File.Exists(checkpoint), error.Message);
        Assert.Contains($"'{checkpoint}'", error.Message);
        // The parts, for callers that word the remedy themselves (the CLI's --skip-bad-images).
        Assert.Equal(20, error.Row);
        Assert.Equal(checkpoint, error.CheckpointPath);
        Assert.InRange(error.StepsDone, 1, 6);
        Assert.Contains("shape020.png", error.Problem);
        Assert.Contains($"'{checkpoint}'", error.Problem);
        Assert.DoesNotContain("SkipBadRows", error.Problem);

        // The kept state resumes, now skipping the bad row, and the skip is counted once.
        var resume = MLNetTestData.TinyTraining(steps: 20);
        resume.DataLoading = TrainingDataLoading.Streaming;
        resume.ShuffleBufferSize = 4;
        resume.BatchSize = 4;
        resume.CheckpointPath = checkpoint;
        resume.SkipBadRows = true;
        resume.ReportEvery = 1;
        var reports = new List<TrainingProgress>();
        resume.Progress = reports.Add;
        var model = Pipeline(new MLContext(seed: 1), images, resume).Fit(data);
        Assert.InRange(reports[0].Step, 2, 6);   // the row is met within the first few steps, after at least one
        Assert.Equal(1, reports[^1].SkippedRows);
        Assert.Equal(20, DiffusionTrainingTransformer.FindModel(model).TrainingSteps);
    }

    [Theory]
    [InlineData(TrainingDataLoading.Streaming)]
    [InlineData(TrainingDataLoading.InMemory)]
    public void SkippingBadRowsTrainsOnTheRestAndReportsTheCount(TrainingDataLoading loading)
    {
        var (ml, data, images) = ShapeFolder(16);
        File.WriteAllBytes(Path.Combine(images, "shape003.png"), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]);   // a truncated PNG
        File.Delete(Path.Combine(images, "shape011.png"));
        var options = MLNetTestData.TinyTraining(steps: 6);
        options.DataLoading = loading;
        options.SkipBadRows = true;
        var reports = new List<TrainingProgress>();
        options.ReportEvery = 1;
        options.Progress = reports.Add;
        Pipeline(ml, images, options).Fit(data);
        Assert.Equal(6, reports.Count);
        Assert.Equal(2, reports[^1].SkippedRows);
    }

    [Theory]
    [InlineData(TrainingDataLoading.Streaming)]
    [InlineData(TrainingDataLoading.InMemory)]
    public void AnEmptyViewFailsClearly(TrainingDataLoading loading)
    {
        var ml = new MLContext(seed: 1);
        var options = Tiny8(steps: 3);
        options.DataLoading = loading;
        var error = Assert.Throws<InvalidOperationException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(Array.Empty<PixelRow>())));
        Assert.Contains("no rows in image column 'Pixels'", error.Message);
    }

    [Fact]
    public void AViewThatChangesSizeBetweenPassesFailsClearly()
    {
        var ml = new MLContext(seed: 1);
        var data = Lazy(ml, pass => 10 + pass, new StrongBox<long>());
        var options = Tiny8(steps: 20);   // 80 rows: several passes over 10, 11, … rows
        options.ShuffleBufferSize = 4;
        var error = Assert.Throws<InvalidOperationException>(() => ml.Transforms.TrainDiffusion(options).Fit(data));
        Assert.Contains("10 rows in its first pass but 11 in pass 2", error.Message);
    }

    [Fact]
    public void CancellingAStreamedRunStopsReadingAndSavesTheState()
    {
        var ml = new MLContext(seed: 1);
        var made = new StrongBox<long>();
        var data = Lazy(ml, _ => 1_000_000, made);
        string checkpoint = Path.Combine(_folder, "cancelled.zip");
        using var cts = new CancellationTokenSource();
        var options = Tiny8(steps: 50);
        options.ShuffleBufferSize = 8;
        options.CheckpointPath = checkpoint;
        options.CancellationToken = cts.Token;
        options.Progress = p => { if (p.Step == 3) cts.Cancel(); };

        Assert.ThrowsAny<OperationCanceledException>(() => ml.Transforms.TrainDiffusion(options).Fit(data));
        Assert.True(File.Exists(checkpoint));
        long after = Interlocked.Read(ref made.Value);
        Thread.Sleep(300);
        Assert.Equal(after, Interlocked.Read(ref made.Value));   // the background reader has stopped
        Assert.InRange(after, 8 + 3 * 4, 8 + 9 * 4);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
