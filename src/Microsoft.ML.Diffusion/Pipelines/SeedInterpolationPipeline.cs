using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>A strip between two seeds' images: their starting noises spherically interpolated, then sampled as one batch.</summary>
internal static class SeedInterpolationPipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, long seedA, long seedB, int count, Action<int, int>? onStep,
        CancellationToken cancellationToken, ConditionBatch? condition)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "An interpolation needs at least 2 images (the two ends).");
        options.Validate();
        PipelineSteps.CheckCondition(model, condition, count);
        using var scope = NewDisposeScope();
        using var sourceA = NoiseSource.PerSample([seedA]);
        using var sourceB = NoiseSource.PerSample([seedB]);
        var a = sourceA.Next([1, .. model.ImageShape], model.Device);
        var b = sourceB.Next([1, .. model.ImageShape], model.Device);
        var x = cat(Enumerable.Range(0, count).Select(i => Slerp(a, b, (double)i / (count - 1))).ToArray(), 0);
        using var sampler = SamplerFactory.Create(model, options);
        using var onDevice = condition?.To(model.Device);
        using var stepNoise = sampler.IsStochastic ? NoiseSource.FromSeed(seedA) : null;
        var denoiser = PipelineSteps.DenoiserFor(model, options.GuidanceScale, options.ForwardBatchSize, onDevice);
        return PipelineSteps.SampleClamped(denoiser, sampler, x, PipelineSteps.Steps(model, options), stepNoise, onStep, cancellationToken);
    }

    // Spherical linear interpolation between two noise tensors (Shoemake 1985), falling back to a straight line when they are nearly parallel.
    private static Tensor Slerp(Tensor a, Tensor b, double t)
    {
        if (t == 0) return a.clone();
        if (t == 1) return b.clone();
        double dot = (a * b).sum().item<float>() / (a.norm().item<float>() * b.norm().item<float>());
        double theta = Math.Acos(Math.Clamp(dot, -1.0, 1.0));
        if (theta < 1e-4) return (1 - t) * a + t * b;
        double s = Math.Sin(theta);
        return Math.Sin((1 - t) * theta) / s * a + Math.Sin(t * theta) / s * b;
    }
}
