using System.Text;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Storage;
using Microsoft.ML.Diffusion.Tokenization;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// Writes a Stable Diffusion model as a diffusers <c>StableDiffusionPipeline</c> folder that
/// <see cref="StableDiffusionFormat.Load"/> (and diffusers' <c>from_pretrained</c>) reads: the UNet, autoencoder and
/// text encoder from memory in float32 safetensors, each with its config; the tokenizer files copied from the folder the
/// model was loaded with (the library keeps no copy of them); the scheduler's configuration. Afterwards the model refers
/// to the written folder, so model zips refer to it.
/// </summary>
internal static class StableDiffusionPipelineWriter
{
    public static void Save(DiffusionModel model, string folder)
    {
        if (model.Network is not UNet2DConditionNoisePredictor network || model.NetworkOptions is not UNet2DConditionOptions unetOptions
            || model.Autoencoder is not { } vae || model.Prompts is not { } prompts)
            throw new NotSupportedException("Only a Stable Diffusion model loaded by StableDiffusionFormat.Load can be written as a Stable Diffusion pipeline folder.");
        var fused = Adapters.LoraFusion.Of(model).Fused;
        if (fused.Count > 0)
            throw new InvalidOperationException($"This model has LoRA adapters fused into it ({string.Join(", ", fused.Select(f => Path.GetFileName(f.Path)))}); unfuse them before writing it, or the written UNet would hold them.");
        if (prompts.SkipLayers != 0)
            throw new NotSupportedException($"The model's text encoder skips its last {prompts.SkipLayers} layers, which a diffusers folder cannot say.");
        string tokenizer = TokenizerFolder(model.Source ?? model.FineTunedFrom);
        var (scheduler, schedulerClass) = DiffusersPipelineFolder.SchedulerToWrite(model);   // fails before anything is written
        string full = Path.GetFullPath(folder);

        Weights(Path.Combine(full, "unet"), UNet2DConditionModel.ConfigFile, unetOptions.DiffusersConfig, UNet2DConditionModel.WeightsFile, network.UNet);
        Weights(Path.Combine(full, "vae"), AutoencoderKLFolder.ConfigFile, vae.Config.Write(), AutoencoderKLFolder.SafeTensorsFile, vae);
        Weights(Path.Combine(full, "text_encoder"), ClipTextEncoderFolder.ConfigFile, prompts.TextModel.Config.Write(), ClipTextEncoderFolder.SafeTensorsFile, prompts.TextModel);
        string tokenizerTarget = Path.Combine(full, "tokenizer");
        if (!string.Equals(Path.GetFullPath(tokenizer), tokenizerTarget, StringComparison.Ordinal))
            foreach (string file in Directory.GetFiles(tokenizer))
                AtomicFile.Write(Path.Combine(tokenizerTarget, Path.GetFileName(file)), s => { using var from = File.OpenRead(file); from.CopyTo(s); });
        Text(Path.Combine(full, "scheduler", DiffusersSchedulerConfig.FileName), scheduler);
        Text(Path.Combine(full, StableDiffusionPipelineFolder.IndexFile), $$"""
            {
              "_class_name": "StableDiffusionPipeline",
              "_diffusers_version": "0.21.4",
              "feature_extractor": [null, null],
              "requires_safety_checker": false,
              "safety_checker": [null, null],
              "scheduler": ["diffusers", "{{schedulerClass}}"],
              "text_encoder": ["transformers", "CLIPTextModel"],
              "tokenizer": ["transformers", "CLIPTokenizer"],
              "unet": ["diffusers", "UNet2DConditionModel"],
              "vae": ["diffusers", "AutoencoderKL"]
            }

            """);

        // The folder now holds exactly the model's weights: zips refer to it.
        model.Source = new ModelSource(ModelSource.DiffusersFolder, full);
        model.FineTunedFrom = null;
    }

    // The tokenizer files the model was loaded with: a diffusers folder's tokenizer/, or the folder given with a single file.
    private static string TokenizerFolder(ModelSource? origin)
    {
        string? folder = origin?.Kind switch
        {
            ModelSource.DiffusersFolder => Path.Combine(origin.Path, "tokenizer"),
            ModelSource.SingleFile => origin.TokenizerFolder,
            _ => null,
        };
        if (folder is null)
            throw new NotSupportedException("The model does not know the tokenizer folder it was loaded with, whose files a Stable Diffusion folder needs.");
        if (!File.Exists(Path.Combine(folder, ClipTokenizerFolder.VocabFile)) || !File.Exists(Path.Combine(folder, ClipTokenizerFolder.MergesFile)))
            throw new FileNotFoundException($"The tokenizer folder the model was loaded with, '{folder}', no longer holds {ClipTokenizerFolder.VocabFile} and {ClipTokenizerFolder.MergesFile}, which the written folder needs.", folder);
        return folder;
    }

    private static void Weights(string folder, string configFile, string config, string weightsFile, TorchSharp.torch.nn.Module module)
    {
        var state = module.state_dict().Select(kv => (kv.Key, kv.Value)).ToList();
        AtomicFile.Write(Path.Combine(folder, weightsFile), s => SafeTensorsWriter.Write(s, state, new Dictionary<string, string> { ["format"] = "pt" }));
        Text(Path.Combine(folder, configFile), config);
    }

    private static void Text(string path, string text) => AtomicFile.Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}
