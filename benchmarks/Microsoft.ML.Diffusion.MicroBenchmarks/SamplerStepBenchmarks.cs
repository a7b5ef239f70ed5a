using BenchmarkDotNet.Attributes;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MicroBenchmarks;

/// <summary>
/// One sampler update on a batch of 64 Fashion-MNIST-sized samples, without the network: the part of a
/// sampling step that is ours rather than the UNet's (a bench-network forward at this batch takes ≈ 150 ms).
/// </summary>
[MemoryDiagnoser]
public class SamplerStepBenchmarks
{
    private IDiffusionSampler _sampler = null!;
    private Tensor _sample = null!, _output = null!, _noise = null!;
    private IDisposable _inference = null!;

    [Params("ddpm", "ddim", "dpm-solver++")]
    public string Kind { get; set; } = "ddpm";

    [GlobalSetup]
    public void Setup()
    {
        Devices.DiffusionDevice.EnsureInitialized();
        manual_seed(1);
        _sampler = DiffusionSamplers.Create(Kind, NoiseSchedule.Linear());
        _sampler.SetTimesteps(20);
        _sample = randn(64, 1, 28, 28);
        _output = randn(64, 1, 28, 28);
        _noise = randn(64, 1, 28, 28);
        _inference = inference_mode();
    }

    /// <summary>A middle step, so DPM-Solver++ takes its second-order branch.</summary>
    [Benchmark]
    public void Step()
    {
        using var scope = NewDisposeScope();
        _sampler.Step(_output, 5, _sample, noise: _noise);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _inference.Dispose();
        _sampler.Dispose();
        _sample.Dispose(); _output.Dispose(); _noise.Dispose();
    }
}
