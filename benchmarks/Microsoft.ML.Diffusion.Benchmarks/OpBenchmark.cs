using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Single-op timings on the "bench" network's shapes (batch 64), forward under inference mode and
/// forward+backward with autograd: to tell whether a gap to PyTorch is in libtorch's kernels or around them.
/// benchmarks/pytorch/ddpm_reference.py --ops runs the same list.
/// </summary>
internal static class OpBenchmark
{
    public sealed record OpResult(string Name, double ForwardS, double ForwardBackwardS);

    public static OpResult[] Run(int repeats, Action<string> log)
    {
        manual_seed(3);
        const int n = 64;
        var ops = new List<(string Name, Func<Module<Tensor, Tensor>> Make, long[] Shape)>
        {
            ("conv3x3 32->32 @28", () => Conv2d(32, 32, 3, padding: 1), [n, 32, 28, 28]),
            ("conv3x3 1->32 @28 (input)", () => Conv2d(1, 32, 3, padding: 1), [n, 1, 28, 28]),
            ("conv3x3 64->32 @28 (up, skip cat)", () => Conv2d(64, 32, 3, padding: 1), [n, 64, 28, 28]),
            ("conv3x3 32->16 @28 (output)", () => Conv2d(32, 16, 3, padding: 1), [n, 32, 28, 28]),
            ("conv3x3 s2 32->32 @28", () => Conv2d(32, 32, 3, stride: 2, padding: 1), [n, 32, 28, 28]),
            ("conv3x3 64->64 @14", () => Conv2d(64, 64, 3, padding: 1), [n, 64, 14, 14]),
            ("conv3x3 64->64 @7", () => Conv2d(64, 64, 3, padding: 1), [n, 64, 7, 7]),
            ("conv1x1 64->192 @7 (qkv)", () => Conv2d(64, 192, 1), [n, 64, 7, 7]),
            ("conv1x1 96->64 @14 (skip)", () => Conv2d(96, 64, 1), [n, 96, 14, 14]),
            ("groupnorm 8x32 @28", () => GroupNorm(8, 32), [n, 32, 28, 28]),
            ("groupnorm 8x64 @14", () => GroupNorm(8, 64), [n, 64, 14, 14]),
            ("silu 32 @28", () => SiLU(), [n, 32, 28, 28]),
            // A broadcast view copied once (the library's first UNet's upsampling), and libtorch's interpolate kernel
            // (diffusers' Upsample2D's).
            ("upsample nearest 64 @14->28", () => new Lambda(Networks.Legacy.Upsample.NearestDouble), [n, 64, 14, 14]),
            ("upsample nearest 64 @14->28 (interpolate)", () => new Lambda(x => functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)), [n, 64, 14, 14]),
            ("sdpa 1 head, 49 tokens x 64", () => new Lambda(x => functional.scaled_dot_product_attention(x, x, x)), [n, 1, 49, 64]),
            ("linear 128->64 (time proj)", () => Linear(128, 64), [n, 128]),
        };
        // One untimed pass over every op first, so the first op measured does not pay for warming up the
        // allocator, oneDNN's primitive cache and the thread pool.
        foreach (var (_, make, shape) in ops)
        {
            using var scope = NewDisposeScope();
            using var module = make();
            var x = randn(shape).requires_grad_(true);
            for (int i = 0; i < 3; i++) module.forward(x).sum().backward();
        }
        var results = new List<OpResult>();
        foreach (var (name, make, shape) in ops)
        {
            using var module = make();
            using var x = randn(shape);
            double fwd, fb;
            using (inference_mode())
                fwd = Median(repeats, () => { using var s = NewDisposeScope(); module.forward(x); });
            using var xg = randn(shape).requires_grad_(true);
            fb = Median(repeats, () =>
            {
                using var s = NewDisposeScope();
                xg.grad?.zero_();
                module.zero_grad();
                module.forward(xg).sum().backward();
            });
            results.Add(new OpResult(name, fwd, fb));
            log($"[ops] {name,-36} forward {fwd * 1e3,8:F2} ms   forward+backward {fb * 1e3,8:F2} ms");
        }
        return results.ToArray();
    }

    private static double Median(int repeats, Action action)
    {
        for (int i = 0; i < 2; i++) action();
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            long s = Stopwatch.GetTimestamp();
            action();
            times.Add(Stopwatch.GetElapsedTime(s).TotalSeconds);
        }
        return TimingStats.From(times).MedianS;
    }

    private sealed class Lambda(Func<Tensor, Tensor> f) : Module<Tensor, Tensor>("Lambda")
    {
        public override Tensor forward(Tensor input) => f(input);
    }
}
