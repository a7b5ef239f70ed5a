using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>Inpainting by RePaint (Lugmayr et al. 2022): <see cref="RePaintSampler"/>'s walk over the model, as diffusers' RePaintPipeline.</summary>
internal static class InpaintingPipeline
{
    public static Tensor Run(DiffusionModel model, InpaintingOptions options, Tensor images, Tensor mask, IReadOnlyList<long> seeds,
        Action<int, int>? onStep, CancellationToken cancellationToken, ConditionBatch? condition)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(mask);
        ArgumentNullException.ThrowIfNull(seeds);
        if (model.IsLatent)
        {
            // Through the autoencoder, unprompted here (InpaintWithPrompts takes prompts).
            if (condition is not null)
                throw new ArgumentException("This model takes prompts, not a condition batch; pass them to InpaintWithPrompts.", nameof(condition));
            return LatentInpaintingPipeline.Run(model, options, images, mask, Enumerable.Repeat("", seeds.Count).ToArray(), null, seeds, onStep, cancellationToken, null);
        }
        options.Validate();
        PipelineSteps.CheckImages(model, images, seeds);
        CheckMask(model, mask, images.shape[0]);
        if (options.Steps > model.Schedule.Length) throw new ArgumentOutOfRangeException(nameof(options), options.Steps, $"Steps must not exceed the schedule's {model.Schedule.Length} steps.");
        PipelineSteps.CheckCondition(model, condition, seeds.Count);

        using var noise = NoiseSource.PerSample(seeds);
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var known = images.to(float32).to(model.Device);
        var redraw = mask.to(float32).to(model.Device).expand(known.shape);
        using var onDevice = condition?.To(model.Device);
        var denoiser = PipelineSteps.DenoiserFor(model, options.GuidanceScale, options.ForwardBatchSize, onDevice);
        return Walk(model, options, denoiser, known, redraw, noise, pixels: true, onStep, cancellationToken).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// RePaint's walk down and back up the timesteps from <paramref name="known"/> and the <paramref name="redraw"/> mask of
    /// its shape. <paramref name="pixels"/> clips x̂₀ and the result to [−1, 1], as for images; latents are not clipped.
    /// </summary>
    internal static Tensor Walk(DiffusionModel model, InpaintingOptions options, Denoiser denoiser, Tensor known, Tensor redraw, NoiseSource noise, bool pixels,
        Action<int, int>? onStep, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var keep = 1 - redraw;   // once, not at every step
        var rePaint = new RePaintSampler(model.Schedule, model.Prediction, options.Steps, options.JumpLength, options.Resamplings, options.Eta, clip: pixels);
        int done = 0;
        var x = noise.Next(known.shape, model.Device).DetachFromDisposeScope();
        // As diffusers' RePaintPipeline: a step down from t leaves x at t − ratio; a step up to t re-noises x from the previous
        // value's time by `ratio` training steps.
        int last = rePaint.Timesteps[0] + 1;
        try
        {
            foreach (int t in rePaint.Timesteps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var step = NewDisposeScope();
                Tensor next;
                if (t < last)
                {
                    var output = denoiser(x, full(known.shape[0], (long)t, dtype: int64, device: model.Device));
                    next = rePaint.Step(output, t, x, known, redraw, keep, noise);
                    onStep?.Invoke(++done, rePaint.DenoisingSteps);
                }
                else
                {
                    next = rePaint.UndoStep(x, last, t, noise);
                }
                var detached = next.DetachFromDisposeScope();
                x.Dispose();
                x = detached;
                last = t;
            }
            // The last denoising step lands on t = 0 − ratio (clean): keep the input exactly where the mask keeps it.
            return (redraw * (pixels ? x.clamp(-1, 1) : x) + keep * known).MoveToOuterDisposeScope();
        }
        finally
        {
            x.Dispose();
        }
    }

    // (N, 1 or C, H, W) with values in [0, 1].
    private static void CheckMask(DiffusionModel model, Tensor mask, long n)
    {
        var shape = model.ImageShape;
        if (mask.dim() != 4 || mask.shape[0] != n || (mask.shape[1] != 1 && mask.shape[1] != shape[0]) || mask.shape[2] != shape[1] || mask.shape[3] != shape[2])
            throw new ArgumentException($"The mask must have shape ({n}, 1 or {shape[0]}, {shape[1]}, {shape[2]}), not [{string.Join(", ", mask.shape)}].", nameof(mask));
        using var check = NewDisposeScope();
        if (!(mask.min().item<float>() >= 0 && mask.max().item<float>() <= 1)) throw new ArgumentException("The mask's values must lie in [0, 1] (1 = redraw).", nameof(mask));
    }
}
