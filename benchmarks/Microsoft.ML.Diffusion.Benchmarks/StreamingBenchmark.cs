using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Training;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Streamed training (issue: data sets larger than memory): peak memory on a lazily generated view of
/// 1,000,000 RGB 64×64 rows; Fashion-MNIST step time streamed versus in memory; and the share of time the
/// training step waits for data on a folder of PNG files decoded by LoadImages as training runs.
/// </summary>
internal static class StreamingBenchmark
{
    public sealed record MemoryResult(long Rows, int Steps, int Batch, long RowsRead, double Seconds, double PeakResidentMiB);

    public sealed record ThroughputResult(string Loading, int Steps, double SecondsPerStep, double DataWaitFraction);

    public sealed record FolderResult(int Files, double DecodeFilesPerSecond, int Steps, double FirstBatchWaitSeconds, double SecondsPerStep, double ImagesPerSecond,
        double DataWaitFraction, double DataWaitFractionAfterFirstBatch);

    public sealed record Report(MemoryResult? Memory, ThroughputResult[] FashionMnist, double? StreamedOverInMemory, FolderResult? Folder);

    private sealed class RgbRow
    {
        [VectorType(3, 64, 64)]
        public float[] Pixels { get; set; } = [];
    }

    private sealed class PathRow
    {
        public string Path { get; set; } = "";
    }

    // A sequence made afresh for every cursor and no collection: the view cannot know its size, so nothing is read ahead of need.
    private sealed class Lazy<T>(Func<IEnumerable<T>> make) : IEnumerable<T>
    {
        public IEnumerator<T> GetEnumerator() => make().GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static DiffusionTrainingOptions BenchNetwork(int steps) => new()
    {
        ImageChannels = 1,
        BaseChannels = 32,
        ChannelMultipliers = [1, 2, 2],
        AttentionResolutions = [7],
        BatchSize = 64,
        TrainingSteps = steps,
        Seed = 0,
        Device = "cpu",
        ReportEvery = 25,
    };

    public static Report Run(BenchmarkOptions options, Action<string> log)
    {
        var parts = options.StreamingParts;
        var memory = parts.Contains("memory") ? MeasureMemory(options.Quick ? 10 : 100, log) : null;   // first: the process's peak is still its own
        int steps = options.Quick ? 30 : 100;
        var fashion = new List<ThroughputResult>();
        double? ratio = null;
        if (parts.Contains("fashion"))
        {
            var data = FashionMnist.LoadDataView(new MLContext(seed: 0), FashionMnistSplit.Train);
            for (int round = 0; round < 2; round++)
                foreach (var loading in new[] { TrainingDataLoading.InMemory, TrainingDataLoading.Streaming })
                    fashion.Add(MeasureFashion(data, loading, steps, log));
            ratio = fashion.Where(r => r.Loading == "Streaming").Average(r => r.SecondsPerStep)
                / fashion.Where(r => r.Loading == "InMemory").Average(r => r.SecondsPerStep);
            log($"[streaming] Fashion-MNIST: streamed steps take {ratio:F3}× the in-memory ones");
        }
        var folder = parts.Contains("folder") ? MeasureFolder(options, options.Quick ? 2_000 : 20_000, options.Quick ? 30 : 300, log) : null;
        return new Report(memory, [.. fashion], ratio, folder);
    }

    private static MemoryResult MeasureMemory(int steps, Action<string> log)
    {
        const long rows = 1_000_000;
        const int batch = 16;
        long made = 0;
        IEnumerable<RgbRow> Generate()
        {
            for (long i = 0; i < rows; i++)
            {
                Interlocked.Increment(ref made);
                var pixels = new float[3 * 64 * 64];
                float phase = (i % 997) / 997f;
                for (int c = 0; c < 3; c++)
                    for (int y = 0; y < 64; y++)
                        for (int x = 0; x < 64; x++)
                            pixels[(c * 64 + y) * 64 + x] = 0.5f + 0.5f * MathF.Sin((x + 2 * y) * 0.1f * (c + 1) + 6.2832f * phase);
                yield return new RgbRow { Pixels = pixels };
            }
        }
        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(new Lazy<RgbRow>(Generate));
        var options = new DiffusionTrainingOptions
        {
            ImageColumnName = "Pixels",
            ImageChannels = 3,
            PixelRange = PixelRange.Unit,
            BaseChannels = 32,
            ChannelMultipliers = [1, 2, 2, 2],
            AttentionResolutions = [8],
            BatchSize = batch,
            TrainingSteps = steps,
            Seed = 0,
            Device = "cpu",
            ReportEvery = Math.Max(1, steps / 4),
            Progress = p => Console.Error.WriteLine($"[streaming] 1M rows: step {p.Step}/{p.TotalSteps}, {p.StepsPerSecond:F2} steps/s, RSS {ProcessMemory.ResidentMiB():F0} MiB"),
        };
        log($"[streaming] training {steps} steps of {batch} on a lazily generated view of {rows:N0} rows of 3×64×64 ({rows * 3 * 64 * 64 * 4 / 1e9:F1} GB as floats)");
        var clock = Stopwatch.StartNew();
        (ml.Transforms.TrainDiffusion(options).Fit(data) as IDisposable)?.Dispose();
        var result = new MemoryResult(rows, steps, batch, Interlocked.Read(ref made), clock.Elapsed.TotalSeconds, ProcessMemory.PeakResidentMiB());
        log($"[streaming] 1M rows: {result.RowsRead:N0} rows read, {result.Seconds:F0} s, peak RSS {result.PeakResidentMiB:F0} MiB");
        return result;
    }

    private static ThroughputResult MeasureFashion(IDataView data, TrainingDataLoading loading, int steps, Action<string> log)
    {
        var options = BenchNetwork(steps);
        options.ImageColumnName = nameof(FashionMnistRow.Pixels);
        options.DataLoading = loading;
        var reports = new List<TrainingProgress>();
        options.Progress = reports.Add;
        (new MLContext(seed: 0).Transforms.TrainDiffusion(options).Fit(data) as IDisposable)?.Dispose();
        // The first report's interval holds the warm-up (first-step allocations and, streamed, the first buffer fill).
        var timed = reports.Skip(1).ToArray();
        double seconds = timed.Sum(r => 25 / r.StepsPerSecond);
        double wait = timed.Sum(r => r.DataWaitFraction * 25 / r.StepsPerSecond) / seconds;
        var result = new ThroughputResult(loading.ToString(), timed.Length * 25, seconds / (timed.Length * 25), wait);
        log($"[streaming] Fashion-MNIST {loading}: {result.SecondsPerStep * 1000:F1} ms/step over steps 26–{steps}, waiting for data {wait:P2}");
        return result;
    }

    private static FolderResult MeasureFolder(BenchmarkOptions options, int files, int steps, Action<string> log)
    {
        string folder = Path.Combine(options.OutputDirectory, $"fashion-png-{files}");
        var paths = WritePngs(folder, files, log);
        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(paths.Select(p => new PathRow { Path = p }).ToList());
        // One pass of LoadImages alone: how fast a single thread reads and decodes the files.
        var decode = Stopwatch.StartNew();
        var loaded = ml.Transforms.LoadImages("Image", folder, nameof(PathRow.Path)).Fit(data).Transform(data);
        using (var cursor = loaded.GetRowCursor([loaded.Schema["Image"]]))
        {
            var getter = cursor.GetGetter<MLImage>(loaded.Schema["Image"]);
            MLImage image = null!;
            while (cursor.MoveNext()) { getter(ref image); image.Dispose(); }
        }
        double filesPerSecond = files / decode.Elapsed.TotalSeconds;
        log($"[streaming] LoadImages alone: {filesPerSecond:F0} files/s on one thread");

        var train = BenchNetwork(steps);
        train.ImageColumnName = "Image";
        train.ImageSize = FashionMnist.ImageSize;
        train.DataLoading = TrainingDataLoading.Streaming;
        train.ReportEvery = 1;
        var reports = new List<TrainingProgress>();
        train.Progress = reports.Add;
        log($"[streaming] training {steps} steps on {files:N0} PNG files decoded by LoadImages as training runs");
        var pipeline = ml.Transforms.LoadImages("Image", folder, nameof(PathRow.Path)).Append(ml.Transforms.TrainDiffusion(train));
        (pipeline.Fit(data) as IDisposable)?.Dispose();

        double[] seconds = reports.Select(r => 1 / r.StepsPerSecond).ToArray();
        double[] waits = reports.Select((r, i) => r.DataWaitFraction * seconds[i]).ToArray();
        double total = seconds.Sum(), later = seconds.Skip(1).Sum();
        var result = new FolderResult(files, filesPerSecond, steps, waits[0], later / (steps - 1), reports.Skip(1).Average(r => r.ImagesPerSecond),
            waits.Sum() / total, waits.Skip(1).Sum() / later);
        log($"[streaming] folder: {result.FirstBatchWaitSeconds:F2} s waiting for the first batch (the whole folder is read once into the shuffle buffer), then {result.SecondsPerStep * 1000:F1} ms/step; waiting for data {result.DataWaitFraction:P2} of the run ({result.DataWaitFractionAfterFirstBatch:P2} after the first batch)");
        return result;
    }

    // Fashion-MNIST training images as 28×28 PNG files (written once, then reused).
    private static string[] WritePngs(string folder, int count, Action<string> log)
    {
        Directory.CreateDirectory(folder);
        var names = Enumerable.Range(0, count).Select(i => $"{i / 1000:D3}/fashion-{i:D5}.png").ToArray();
        if (names.All(n => File.Exists(Path.Combine(folder, n)))) return names;
        log($"[streaming] writing {count:N0} PNG files to {folder}");
        var (pixels, _, available) = FashionMnist.LoadRaw(FashionMnistSplit.Train, maxItems: count);
        if (available < count) throw new InvalidOperationException($"Fashion-MNIST has {available} training images; {count} were asked for.");
        const int area = FashionMnist.ImageSize * FashionMnist.ImageSize;
        for (int i = 0; i < count; i++)
        {
            var rgba = new byte[area * 4];
            for (int p = 0; p < area; p++)
            {
                byte v = pixels[i * area + p];
                rgba[4 * p] = v; rgba[4 * p + 1] = v; rgba[4 * p + 2] = v; rgba[4 * p + 3] = 255;
            }
            string path = Path.Combine(folder, names[i]);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var image = MLImage.CreateFromPixels(FashionMnist.ImageSize, FashionMnist.ImageSize, MLPixelFormat.Rgba32, rgba);
            image.Save(path);
        }
        return names;
    }
}
