using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tokenization;

namespace Microsoft.ML.Diffusion.Interchange;

/// <summary>
/// What a Stable Diffusion checkpoint holds, whatever its format (a diffusers folder or a single file): the three
/// networks with loaded weights, the tokenizer, the noise schedule and prediction type, and the sampler its scheduler
/// names. The networks belong to whoever takes the parts (disposing the parts frees them).
/// </summary>
internal sealed record StableDiffusionParts(
    UNet2DConditionModel UNet,
    string UNetConfigJson,
    AutoencoderKL Autoencoder,
    ClipTextModel TextModel,
    int SkipLayers,
    ClipTokenizer Tokenizer,
    NoiseScheduleOptions Schedule,
    PredictionType Prediction,
    SamplerName Sampler,
    SamplerOptions SamplerOptions,
    string? DiffusersScheduler,
    string Family) : IDisposable
{
    public void Dispose()
    {
        UNet.Dispose();
        Autoencoder.Dispose();
        TextModel.Dispose();
    }
}
