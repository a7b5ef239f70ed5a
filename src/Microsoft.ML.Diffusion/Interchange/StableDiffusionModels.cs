using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp;

namespace Microsoft.ML.Diffusion.Interchange;

/// <summary>Turns <see cref="StableDiffusionParts"/> into a <see cref="DiffusionModel"/> whose components are the UNet, the autoencoder and the prompt encoder.</summary>
internal static class StableDiffusionModels
{
    public static DiffusionModel Build(StableDiffusionParts parts, torch.Device? device, ModelSource source)
    {
        DiffusionDevice.EnsureInitialized();
        var target = device ?? DiffusionDevice.Resolve();
        var options = UNet2DConditionOptions.From(parts.UNetConfigJson, parts.UNet.Config, parts.Tokenizer.MaxLength);
        var network = new UNet2DConditionNoisePredictor(options, parts.UNet);
        network.to(target);
        parts.Autoencoder.to(target);
        parts.Autoencoder.eval();
        parts.TextModel.to(target);
        parts.TextModel.eval();
        return new DiffusionModel(network, parts.Schedule, parts.Prediction)
        {
            Autoencoder = parts.Autoencoder,
            Prompts = new PromptEncoder(parts.Tokenizer, parts.TextModel, parts.SkipLayers),
            DiffusersScheduler = parts.DiffusersScheduler,
            Source = source,
        };
    }
}
