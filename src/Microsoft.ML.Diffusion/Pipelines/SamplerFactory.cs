using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>The sampler that generation options name, configured for a model's schedule and prediction type.</summary>
internal static class SamplerFactory
{
    public static IDiffusionSampler Create(DiffusionModel model, GenerationOptions options)
        => DiffusionSamplers.Create(options.Sampler, model.Schedule, options.SamplerOptionsFor(model.Prediction));
}
