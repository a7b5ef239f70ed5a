using System.Collections.Concurrent;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Serving;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Microsoft.ML.Diffusion.Tests.Models;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Serving;

/// <summary>
/// The generation service as hosts use it: concurrent callers get the images they would get alone, bit for bit; the queue
/// refuses work when full; cancellation and progress act per request and per step; memory stays flat.
/// </summary>
public sealed class GenerationServiceTests(ITestOutputHelper output, GenerationServiceTests.Model model) : IClassFixture<GenerationServiceTests.Model>
{
    /// <summary>A tiny class-conditional UNet with random weights, shared by the tests.</summary>
    public sealed class Model : IDisposable
    {
        public DiffusionModel Value { get; } = ForwardChunkingTests.RandomClassModel();

        public void Dispose() => Value.Dispose();
    }

    private DiffusionModel TheModel => model.Value;

    private static GenerationRequest Request(long seed, string sampler = "ddim", int steps = 6, int? label = null, double guidance = 1.0) => new()
    {
        Seed = seed,
        Options = new GenerationOptions { Sampler = sampler, Steps = steps, GuidanceScale = guidance },
        Condition = label is { } l ? ConditionBatch.Classes(tensor(new long[] { l })) : null,
    };

    private static void AssertSameBits(GeneratedImage expected, GeneratedImage actual, string what)
    {
        Assert.Equal(expected.Pixels.Length, actual.Pixels.Length);
        for (int i = 0; i < expected.Pixels.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected.Pixels[i]) != BitConverter.SingleToInt32Bits(actual.Pixels[i]))
                Assert.Fail($"{what}: pixel {i} is {actual.Pixels[i]:R}, alone it is {expected.Pixels[i]:R} (max difference {expected.Pixels.Zip(actual.Pixels, (a, b) => Math.Abs(a - b)).Max():E2})");
    }

    // What the service relies on: in a forward of a fixed size, a row's output depends only on its own inputs; across
    // sizes it does not (other kernels), which is why the service pads to a fixed size.
    [Fact]
    public void InAForwardOfFixedSizeARowDependsOnlyOnItsOwnInputs()
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var x = randn([16, .. TheModel.ImageShape], generator: new TorchSharp.torch.Generator(1));
        var t = randint(0, 1000, [16], dtype: ScalarType.Int64, generator: new TorchSharp.torch.Generator(2));
        foreach (int n in new[] { 2, 4, 5 })
        {
            var a = TheModel.Network.Forward(x.narrow(0, 0, n), t.narrow(0, 0, n), null);
            var (y, u) = (x.narrow(0, 8, n).clone(), t.narrow(0, 8, n).clone());
            y[n - 1] = x[0];
            u[n - 1] = t[0];
            var b = TheModel.Network.Forward(y, u, null);
            Assert.True((b[n - 1] - a[0]).abs().max().item<float>() == 0, $"in a forward of {n}, row 0 moved to the end among other rows changed");
        }
        var four = TheModel.Network.Forward(x.narrow(0, 0, 4), t.narrow(0, 0, 4), null)[0];
        foreach (int n in new[] { 1, 2, 16 })
            output.WriteLine($"row 0 in a forward of {n} vs of 4: max difference {(TheModel.Network.Forward(x.narrow(0, 0, n), t.narrow(0, 0, n), null)[0] - four).abs().max().item<float>():E2}");
    }

    // Without the fixed forward size the batch's kernels change with its size: the images differ by float rounding only.
    [Fact]
    public async Task WithOneForwardPerBatchImagesDifferFromTheirLoneRunsByRoundingOnly()
    {
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { BatchWindow = TimeSpan.FromMilliseconds(300), ForwardRows = null });
        var alone = await service.GenerateAsync(Request(7, "dpm-solver++", 8, 1, 3.0));
        var batch = await Task.WhenAll(new long[] { 3, 7, 11, 12, 13, 14, 15, 16, 17 }.Select(s => service.GenerateAsync(Request(s, "dpm-solver++", 8, 1, 3.0))));
        float max = alone.Pixels.Zip(batch[1].Pixels, (a, b) => Math.Abs(a - b)).Max();
        output.WriteLine($"ForwardRows = null: seed 7 alone vs in a batch of 9: max difference {max:E2}");
        Assert.True(max < 1e-4, $"{max}");
    }

    [Theory]
    [InlineData("ddim", null, 1.0)]
    [InlineData("dpm-solver++", 1, 3.0)]   // multistep history and guidance's doubled rows
    [InlineData("ddpm", 2, 1.0)]           // step noise from each request's own generator
    public async Task ARequestsImageIsTheSameBitsAloneAndInABatch(string sampler, int? label, double guidance)
    {
        var sizes = new ConcurrentBag<int>();
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { BatchWindow = TimeSpan.FromMilliseconds(300) }) { OnBatchStep = sizes.Add };
        var alone = await service.GenerateAsync(Request(7, sampler, 6, label, guidance));
        Assert.Equal(1, sizes.Max());
        var batch = await Task.WhenAll(new long[] { 3, 7, 11, 12, 13 }.Select(s => service.GenerateAsync(Request(s, sampler, 6, label, guidance))));
        Assert.Equal(5, sizes.Max());
        AssertSameBits(alone, batch[1], $"{sampler} seed 7 in a batch of 5");
        Assert.NotEqual(batch[0].Pixels, batch[1].Pixels);

        // The library's own batched run gives the same image (its sampler steps the whole batch at once).
        using var condition = label is { } l ? ConditionBatch.Classes(tensor(new long[] { l, l })) : null;
        using var library = TheModel.Generate(new GenerationOptions { Sampler = sampler, Steps = 6, GuidanceScale = guidance }, [7, 3], condition: condition);
        float[] first = library[0].data<float>().ToArray();
        output.WriteLine($"{sampler}: service vs DiffusionPipelines.Generate in a batch of 2: max difference {first.Zip(alone.Pixels, (a, b) => Math.Abs(a - b)).Max():E2}");
    }

    [Fact]
    public async Task ThirtyTwoRequestsFromEightClientsEqualTheSameRunOneAtATime()
    {
        // Two kinds of request, so batches form per kind and requests join running batches.
        GenerationRequest Make(int i) => i % 3 == 0 ? Request(100 + i, "dpm-solver++", 8, label: i % 3, guidance: 2.0) : Request(100 + i, "ddim", 6, label: i % 3, guidance: 2.0);
        var sizes = new ConcurrentBag<int>();
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { BatchWindow = TimeSpan.FromMilliseconds(20), MaxBatchSize = 8 }) { OnBatchStep = sizes.Add };
        var one = new GeneratedImage[32];
        for (int i = 0; i < 32; i++) one[i] = await service.GenerateAsync(Make(i));
        Assert.Equal(1, sizes.Max());
        sizes.Clear();

        var together = new GeneratedImage[32];
        await Task.WhenAll(Enumerable.Range(0, 8).Select(client => Task.Run(async () =>
        {
            var mine = Enumerable.Range(0, 4).Select(k => client * 4 + k).ToArray();
            var images = await Task.WhenAll(mine.Select(i => service.GenerateAsync(Make(i))));
            for (int k = 0; k < 4; k++) together[mine[k]] = images[k];
        })));
        output.WriteLine($"batch sizes: {string.Join(" ", sizes.GroupBy(s => s).OrderBy(g => g.Key).Select(g => $"{g.Key}×{g.Count()}"))}");
        Assert.True(sizes.Max() > 1, "the concurrent requests must have been batched");
        for (int i = 0; i < 32; i++) AssertSameBits(one[i], together[i], $"request {i}");
    }

    [Fact]
    public async Task AFullQueueRefusesWithATypedException()
    {
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { MaxBatchSize = 1, QueueCapacity = 2, BatchWindow = TimeSpan.Zero });
        var blocking = new SynchronousProgress(_ => { started.Set(); release.Wait(TimeSpan.FromSeconds(30)); });
        var first = service.GenerateAsync(Request(1, steps: 2), blocking);
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)));
        var queued = new[] { service.GenerateAsync(Request(2, steps: 2)), service.GenerateAsync(Request(3, steps: 2)) };
        Assert.Equal(2, service.QueuedCount);
        var e = Assert.Throws<GenerationQueueFullException>(Submit(() => service.GenerateAsync(Request(4, steps: 2))));
        Assert.Equal(2, e.Capacity);
        release.Set();
        await first;
        await Task.WhenAll(queued);
        await service.GenerateAsync(Request(4, steps: 2));   // room again
    }

    [Fact]
    public async Task CancellingTakesEffectBeforeTheNextStepAndLeavesTheBatchsOtherImagesAlone()
    {
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { BatchWindow = TimeSpan.FromMilliseconds(300) });
        var expected = await service.GenerateAsync(Request(21, "dpm-solver++", 20));
        using var cts = new CancellationTokenSource();
        var seen = new List<int>();
        var cancelled = service.GenerateAsync(Request(20, "dpm-solver++", 20), new SynchronousProgress(p => { seen.Add(p.StepsDone); if (p.StepsDone == 3) cts.Cancel(); }), cts.Token);
        var other = service.GenerateAsync(Request(21, "dpm-solver++", 20));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        AssertSameBits(expected, await other, "the other request of the batch");
        Assert.Equal([1, 2, 3], seen);

        // From another thread: the task ends at once, and the row does at most the step already under way.
        using var late = new CancellationTokenSource();
        int lastStep = 0, stepAtCancel = -1;
        var running = service.GenerateAsync(Request(22, "ddim", 200), new SynchronousProgress(p => Volatile.Write(ref lastStep, p.StepsDone)), late.Token);
        while (Volatile.Read(ref lastStep) < 5) await Task.Delay(5);
        stepAtCancel = Volatile.Read(ref lastStep);
        late.Cancel();
        Assert.True(running.IsCanceled);
        await Task.Delay(500);
        Assert.InRange(Volatile.Read(ref lastStep), stepAtCancel, stepAtCancel + 1);

        // A queued request leaves the queue.
        using var queuedCts = new CancellationTokenSource();
        using var gate = new ManualResetEventSlim();
        var blocker = service.GenerateAsync(Request(23, steps: 2), new SynchronousProgress(_ => gate.Wait(TimeSpan.FromSeconds(30))));
        while (service.QueuedCount > 0) await Task.Delay(10);   // the blocker is running
        var waiting = service.GenerateAsync(Request(24, "dpm-solver++", 4), null, queuedCts.Token);
        Assert.Equal(1, service.QueuedCount);
        queuedCts.Cancel();
        Assert.Equal(0, service.QueuedCount);
        Assert.True(waiting.IsCanceled);
        gate.Set();
        await blocker;
    }

    [Theory]
    [InlineData("dpm-solver++", 8, 8)]
    [InlineData("heun", 4, 7)]   // two evaluations per step but the last
    public async Task ProgressCountsEveryNetworkEvaluation(string sampler, int steps, int evaluations)
    {
        using var service = new DiffusionGenerationService(TheModel);
        var reports = new List<GenerationProgress>();
        await service.GenerateAsync(Request(5, sampler, steps), new SynchronousProgress(reports.Add));
        Assert.Equal(Enumerable.Range(1, evaluations).Select(i => new GenerationProgress(i, evaluations)), reports);
    }

    [Fact]
    public async Task BadRequestsFailTheirCallerAndDisposeStopsTheWorker()
    {
        var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { MaxBatchSize = 1, BatchWindow = TimeSpan.Zero });
        Assert.Contains("no prompts", Assert.Throws<ArgumentException>(Submit(() => service.GenerateAsync(new GenerationRequest { Prompt = "a cat" }))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(Submit(() => service.GenerateAsync(Request(1, steps: 5000))));
        Assert.Throws<UnknownSamplerException>(Submit(() => service.GenerateAsync(Request(1, sampler: "nope"))));
        Assert.Contains("Width and Height", Assert.Throws<ArgumentException>(Submit(() => service.GenerateAsync(new GenerationRequest { Options = new GenerationOptions { Width = 64 } }))).Message);

        var long1 = service.GenerateAsync(Request(1, "ddim", 300));
        var long2 = service.GenerateAsync(Request(2, "ddim", 300));
        await Task.Delay(200);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        service.Dispose();
        output.WriteLine($"Dispose took {watch.ElapsedMilliseconds} ms");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => long1);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => long2);
        Assert.Throws<ObjectDisposedException>(Submit(() => service.GenerateAsync(Request(3))));
        service.Dispose();
    }

    [Fact]
    public async Task MemoryStaysFlatOverManyRequests()
    {
        using var service = new DiffusionGenerationService(TheModel, new GenerationServiceOptions { BatchWindow = TimeSpan.FromMilliseconds(5) });
        async Task Round(int round)
        {
            var requests = Enumerable.Range(0, 24).Select(i => Request(round * 100 + i, i % 2 == 0 ? "ddim" : "ddpm", 3, label: i % 3, guidance: 2.0)).ToArray();
            await Task.WhenAll(requests.Select(r => service.GenerateAsync(r)));
        }
        for (int r = 0; r < 3; r++) await Round(r);   // warm-up: caches and pools fill
        var readings = new List<MemoryReading>();
        for (int r = 0; r < 9; r++)
        {
            await Round(10 + r);
            readings.Add(MemoryProbe.Read() with { LiveTensors = 0 });   // tensors live on the worker thread; its scopes are its own
        }
        output.WriteLine(string.Join("\n", readings.Select(m => $"resident {m.ResidentMiB:F0} MiB, native heap {m.NativeHeapBytes / (1 << 20):F1} MiB, managed {m.ManagedHeapBytes / (1 << 20):F1} MiB")));
        var leaks = MemoryTrend.FindLeaks(readings, new MemoryTrend.Budget(NativeHeapBytes: 2 << 20, ManagedHeapBytes: 256 << 10, ResidentMiB: 16));
        Assert.True(leaks.Count == 0, string.Join(Environment.NewLine, leaks));
        Assert.True(readings[^1].ResidentMiB - readings[0].ResidentMiB < 48, $"resident memory grew by {readings[^1].ResidentMiB - readings[0].ResidentMiB:F0} MiB over 192 requests");
    }

    // Submits without awaiting: the checks throw at once, before any task exists.
    private static Action Submit(Func<Task> submit) => () => submit();

    // Progress<T> posts to the thread pool; the tests need to act on the worker thread between steps.
    private sealed class SynchronousProgress(Action<GenerationProgress> report) : IProgress<GenerationProgress>
    {
        public void Report(GenerationProgress value) => report(value);
    }
}
