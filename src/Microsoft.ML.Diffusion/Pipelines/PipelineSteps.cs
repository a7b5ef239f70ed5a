using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>What the sampling tasks share: checking their inputs against the model, the guided denoiser, and the clamped reverse process.</summary>
internal static class PipelineSteps
{
    /// <summary>The noise predictor, guided by <paramref name="guidanceScale"/> when there is a condition.</summary>
    public static Denoiser DenoiserFor(DiffusionModel model, double guidanceScale, int forwardBatchSize, ConditionBatch? onDevice)
        => onDevice is null ? model.AsDenoiser(forwardBatchSize) : model.AsDenoiser(onDevice, guidanceScale, forwardBatchSize);

    /// <summary>The reverse process from x (at the sampler's step <paramref name="startIndex"/>), clamped to [−1, 1] and moved out of the caller's scope.</summary>
    public static Tensor SampleClamped(Denoiser denoiser, IDiffusionSampler sampler, Tensor x, int steps, NoiseSource? noise,
        Action<int, int>? onStep, CancellationToken cancellationToken, int startIndex = 0)
    {
        using var result = SamplingLoop.Run(denoiser, sampler, x, steps, noise, onStep, cancellationToken, startIndex);
        return result.clamp(-1.0, 1.0).MoveToOuterDisposeScope();
    }

    /// <summary>The step count the options ask for, or the sampler's usual one.</summary>
    public static int Steps(DiffusionModel model, GenerationOptions options) => options.Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, model.Schedule);

    /// <summary>One condition per image, of the kind the network takes.</summary>
    public static void CheckCondition(DiffusionModel model, ConditionBatch? condition, long count)
    {
        if (condition is null) return;
        if (!model.Network.IsConditional) throw new ArgumentException("This model is unconditional; it takes no condition.", nameof(condition));
        if (condition.Count != count) throw new ArgumentException($"There are {condition.Count} conditions for {count} images.", nameof(condition));
        condition.Validate(model.NetworkOptions.Condition);
    }

    /// <summary>Images of the model's shape, one per seed, with finite values.</summary>
    public static void CheckImages(DiffusionModel model, Tensor images, IReadOnlyList<long> seeds)
    {
        var shape = model.ImageShape;
        if (images.dim() != 4 || !images.shape.Skip(1).SequenceEqual(shape))
            throw new ArgumentException($"The images must have shape (N, {string.Join(", ", shape)}) to match the model, not [{string.Join(", ", images.shape)}].", nameof(images));
        if (images.shape[0] != seeds.Count)
            throw new ArgumentException($"There are {images.shape[0]} images for {seeds.Count} seeds.", nameof(seeds));
        using var check = NewDisposeScope();
        long nonFinite = (~isfinite(images)).sum().item<long>();
        if (nonFinite > 0) throw new ArgumentException($"The images contain {nonFinite} NaN or infinite values.", nameof(images));
    }
}
