using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>
/// A strip of one seed's images between two conditions: each image's prediction is a weighted sum of the two guided
/// predictions (composable diffusion, Liu et al. 2022).
/// </summary>
internal static class ConditionInterpolationPipeline
{
    public static Tensor Run(DiffusionModel model, GenerationOptions options, long seed, ConditionBatch from, ConditionBatch to, int count,
        Action<int, int>? onStep, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "An interpolation needs at least 2 images (the two ends).");
        if (from.Count != 1) throw new ArgumentException($"'from' must hold one condition, not {from.Count}.", nameof(from));
        if (to.Count != 1) throw new ArgumentException($"'to' must hold one condition, not {to.Count}.", nameof(to));
        options.Validate();
        PipelineSteps.CheckCondition(model, from, 1);
        PipelineSteps.CheckCondition(model, to, 1);
        using var scope = NewDisposeScope();
        using var source = NoiseSource.PerSample([seed]);
        var x = source.Next([1, .. model.ImageShape], model.Device).expand(count, -1, -1, -1).contiguous();
        using var every = zeros(count, dtype: int64);
        using var fromAll = from.Select(every);
        using var toAll = to.Select(every);
        // Blending two guided predictions is u + w·((1 − λ)·ε_from + λ·ε_to − u): one forward over the from, to (and, when
        // guided, null) conditions, the unconditional pass shared by both sides.
        double w = options.GuidanceScale;
        bool guided = w != 1.0;
        using var both = fromAll.Concat(toAll);
        using var nulls = guided ? fromAll.AllNull() : null;
        using var withNull = nulls is null ? null : both.Concat(nulls);
        using var conditions = (withNull ?? both).To(model.Device);
        int passes = guided ? 3 : 2;
        var lambda = linspace(0, 1, count, dtype: float32, device: model.Device).view(count, 1, 1, 1);
        Denoiser blended = (sample, t) =>
        {
            using var step = NewDisposeScope();
            var output = model.ForwardInChunks(cat(Enumerable.Repeat(sample, passes).ToArray(), 0), cat(Enumerable.Repeat(t, passes).ToArray(), 0),
                conditions, options.ForwardBatchSize).chunk(passes, 0);
            var mixed = (1 - lambda) * output[0] + lambda * output[1];
            return (guided ? output[2] + w * (mixed - output[2]) : mixed).MoveToOuterDisposeScope();
        };
        using var sampler = SamplerFactory.Create(model, options);
        using var stepNoise = sampler.IsStochastic ? NoiseSource.FromSeed(seed) : null;
        return PipelineSteps.SampleClamped(blended, sampler, x, PipelineSteps.Steps(model, options), stepNoise, onStep, cancellationToken);
    }
}
