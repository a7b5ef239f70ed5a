using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange;

/// <summary>Hugging Face diffusers pipeline folders, read into a <see cref="DiffusionModel"/> and written from one.</summary>
public static class DiffusersFormat
{
    /// <summary>
    /// Loads a Hugging Face diffusers model folder: a <c>UNet2DModel</c> (<c>config.json</c> with
    /// <c>diffusion_pytorch_model.safetensors</c> or <c>.bin</c>, in float32, float16 or bfloat16) at the top or in a
    /// <c>unet</c> subfolder, and the noise schedule and prediction type of its <c>scheduler_config.json</c> (top or
    /// <c>scheduler</c> subfolder; DDPMScheduler, DDIMScheduler or DPMSolverMultistepScheduler). The weights go to
    /// <paramref name="device"/> (default: <see cref="DiffusionDevice.Resolve"/>). <c>GenerationOptions.FromDiffusers</c>
    /// gives the sampler settings that reproduce the scheduler. A folder <see cref="SaveDiffusers"/> wrote for a text- or
    /// vector-conditional model (a <c>UNet2DConditionModel</c> in <c>unet</c> and the library's condition encoder in
    /// <c>condition_encoder</c>) reads back whole. Errors name the file and the field or tensor; a folder that lacks files
    /// names all of them. The model remembers the folder's path and the SHA-256 of its files: a model zip of it with LoRA
    /// adapters fused refers to the folder as their base.
    /// </summary>
    public static DiffusionModel Load(string folder, Device? device = null) => Diffusers.DiffusersPipelineFolder.Load(folder, device);

    /// <summary>
    /// Writes the model as a diffusers pipeline folder that <c>DDPMPipeline.from_pretrained</c> (and
    /// <c>UNet2DModel.from_pretrained</c> on its <c>unet</c> subfolder) loads: <c>model_index.json</c>,
    /// <c>unet/config.json</c>, <c>unet/diffusion_pytorch_model.safetensors</c> (float32) and
    /// <c>scheduler/scheduler_config.json</c>: the scheduler of the diffusers folder the model came from, unchanged, or
    /// for a model trained here a DDPMScheduler with its schedule and prediction type. A class-conditional model's
    /// <c>num_class_embeds</c> counts the learned null class, its last label. A text- or vector-conditional model trained
    /// here (diffusers' <c>UNet2DConditionModel</c> reading the library's condition encoder) is written without
    /// <c>model_index.json</c>: <c>unet/</c> for <c>UNet2DConditionModel.from_pretrained</c>, <c>scheduler/</c>, and the
    /// encoder in the library's own format in <c>condition_encoder/</c> (<c>config.json</c>, <c>model.safetensors</c>).
    /// Other networks (text- and vector-conditional models of the library's first UNet) cannot be written; files are replaced atomically. Written with no LoRA
    /// fused, the folder holds the model's own weights, and model zips of the model with LoRA adapters fused later refer
    /// to it as their base; written with LoRAs fused, it holds the merged weights.
    /// <para>
    /// A Stable Diffusion model (such as one fine-tuned by <c>TrainDiffusion</c>) is written as a
    /// <c>StableDiffusionPipeline</c> folder instead, which <see cref="StableDiffusionFormat.Load"/> reads: <c>unet/</c>,
    /// <c>vae/</c> and <c>text_encoder/</c> from memory (float32 safetensors), <c>tokenizer/</c> copied from the folder the
    /// model was loaded with, <c>scheduler/</c> and <c>model_index.json</c>. The model then refers to the written folder:
    /// model zips saved afterwards refer to it (by path and SHA-256) instead of the files it was loaded from.
    /// </para>
    /// </summary>
    public static void SaveDiffusers(this DiffusionModel model, string folder)
        => Diffusers.DiffusersPipelineFolder.Save(model ?? throw new ArgumentNullException(nameof(model)), folder);
}
