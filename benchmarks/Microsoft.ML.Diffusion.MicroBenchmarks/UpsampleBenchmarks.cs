using BenchmarkDotNet.Attributes;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.MicroBenchmarks;

/// <summary>
/// Nearest-neighbour ×2 upsampling of the bench network's 64-channel 14×14 maps (batch 64), in inference:
/// libtorch's interpolate kernel (what diffusers' <c>Upsample2D</c> runs) against a broadcast view copied once (what the
/// library's first UNet ran, <c>Networks/Legacy/Upsample</c>).
/// </summary>
[MemoryDiagnoser]
public class UpsampleBenchmarks
{
    private Tensor _x = null!;
    private IDisposable _inference = null!;

    [Params(7, 14)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Devices.DiffusionDevice.EnsureInitialized();
        manual_seed(1);
        _x = randn(64, 64, Size, Size);
        _inference = inference_mode();
    }

    [Benchmark(Baseline = true)]
    public void Interpolate()
    {
        using var y = functional.interpolate(_x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
    }

    [Benchmark]
    public void ExpandReshape()
    {
        using var y = Networks.Legacy.Upsample.NearestDouble(_x);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _inference.Dispose();
        _x.Dispose();
    }
}
