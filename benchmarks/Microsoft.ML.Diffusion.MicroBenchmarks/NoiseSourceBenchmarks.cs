using BenchmarkDotNet.Attributes;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MicroBenchmarks;

/// <summary>
/// Noise for one step of a stochastic sampler, batch 64 × 1×28×28: one generator for the batch, or one
/// generator per sample (what <c>Generate</c> uses, so that an image depends only on its own seed).
/// </summary>
[MemoryDiagnoser]
public class NoiseSourceBenchmarks
{
    private NoiseSource _single = null!, _perSample = null!;
    private readonly long[] _shape = [64, 1, 28, 28];

    [GlobalSetup]
    public void Setup()
    {
        Devices.DiffusionDevice.EnsureInitialized();
        _single = NoiseSource.FromSeed(1);
        _perSample = NoiseSource.PerSample(Enumerable.Range(1, 64).Select(i => (long)i).ToArray());
    }

    [Benchmark(Baseline = true)]
    public void OneGenerator()
    {
        using var noise = _single.Next(_shape, CPU);
    }

    [Benchmark]
    public void GeneratorPerSample()
    {
        using var noise = _perSample.Next(_shape, CPU);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _single.Dispose();
        _perSample.Dispose();
    }
}
