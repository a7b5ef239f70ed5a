using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Legacy;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// What a network computes, for <c>benchmarks/lockstep.py</c> to compare with the PyTorch reference's
/// <c>network_probe</c> (<c>benchmarks/pytorch/ddpm_reference.py</c>): a fresh network whose every parameter is set
/// by a rule of its shape alone, one forward of a fixed input at fixed timesteps, and two statistics of the output.
/// </summary>
/// <remarks>
/// A parameter count says nothing about what is computed (and counts storage: the output projection's zero
/// padding used to be stored by one side and not the other). These two numbers agree to float rounding only if the
/// two networks are the same function: in the reference, moving the attention to another resolution changes them
/// by 5–15 %, GroupNorm(4) for GroupNorm(8) by 8 %, bilinear for nearest upsampling by 0.6 %. The rule depends on
/// shapes, not names or registration order, so the two programs need not build their layers in the same order.
/// </remarks>
internal static class NetworkProbe
{
    private static readonly long[] Timesteps = [17, 600];
    private const long Modulus = 2147483647;

    /// <summary>n numbers in [−1, 1): an integer hash of the index (exact, so Python's int64 tensors give the same ones).</summary>
    internal static double[] Values(long n, long offset = 0)
    {
        var v = new double[n];
        for (long k = 0; k < n; k++)
        {
            long i = offset + k;
            long h = ((i * i) % Modulus * 48271 + i * 16807 + 12345) % Modulus;
            v[k] = h / (double)Modulus * 2 - 1;
        }
        return v;
    }

    /// <summary>
    /// Mean |y| and the mean of y times fixed values, for the output y of the network <paramref name="options"/> build.
    /// The rule fills the reference's layers — the library's first UNet, whose fused qkv convolution the reference shares —
    /// and the weights are then renamed into the UNet2DModel the library trains, which computes the same function.
    /// </summary>
    public static (double MeanAbs, double Projection) Run(UNetOptions options)
    {
        using var scope = NewDisposeScope();
        using var first = new UNetNoisePredictor(options);
        using var noGrad = no_grad();
        foreach (var p in first.parameters())
        {
            long n = p.numel();
            double[] u = Values(n);
            double scale = p.dim() >= 2 ? Math.Sqrt(3.0 / (n / p.shape[0])) : 0;
            var values = u.Select(x => (float)(p.dim() >= 2 ? x * scale : x * 0.2 + 1.0)).ToArray();
            p.copy_(tensor(values).view(p.shape));
        }
        using var network = NoisePredictors.Create(options);
        network.eval();
        FirstUNetFiles.LoadRenamed(network, options, first.state_dict(), "the probe");
        long[] shape = [Timesteps.Length, options.ImageChannels, options.ImageSize, options.ImageSize];
        long count = shape.Aggregate(1L, (a, b) => a * b);
        var x = tensor(Values(count, offset: 7).Select(v => (float)v).ToArray()).view(shape);
        var y = network.forward(x, tensor(Timesteps)).to_type(float64).flatten();
        double meanAbs = y.abs().mean().item<double>();
        double projection = (y * tensor(Values(y.numel(), offset: 3))).mean().item<double>();
        return (meanAbs, projection);
    }
}
