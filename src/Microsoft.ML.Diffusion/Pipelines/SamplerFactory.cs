using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>The sampler that generation options name, configured for a model's schedule and prediction type.</summary>
internal static class SamplerFactory
{
    public static IDiffusionSampler Create(DiffusionModel model, GenerationOptions options) => DiffusionSamplers.Create(options.Sampler, model.Schedule, new SamplerOptions
    {
        Prediction = model.Prediction,
        Eta = options.Eta,
        Clipping = options.Clipping,
        ClipRange = options.ClipRange,
        ThresholdPercentile = options.ThresholdPercentile,
        UseClippedModelOutput = options.UseClippedModelOutput,
        UseLargeVariance = options.UseLargeVariance,
        SetAlphaToOne = options.SetAlphaToOne,
        Spacing = options.Spacing,
        StepsOffset = options.StepsOffset,
    });
}
