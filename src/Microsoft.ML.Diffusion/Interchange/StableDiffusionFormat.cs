using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange;

/// <summary>Stable Diffusion 1.x and 2.x checkpoints as people download them, read into a <see cref="DiffusionModel"/> that takes prompts.</summary>
public static class StableDiffusionFormat
{
    /// <summary>
    /// Whether <paramref name="path"/> is a diffusers folder whose <c>model_index.json</c> names a text-to-image pipeline
    /// (Stable Diffusion, or a family <see cref="Load"/> refuses by name), rather than a pixel-space model.
    /// </summary>
    public static bool IsTextToImageFolder(string path)
        => Directory.Exists(path) && StableDiffusionPipelineFolder.IsTextToImagePipeline(path);

    /// <summary>
    /// Loads a Stable Diffusion 1.x/2.x model: a diffusers <c>StableDiffusionPipeline</c> folder (<c>model_index.json</c>,
    /// <c>unet/</c>, <c>vae/</c>, <c>text_encoder/</c>, <c>tokenizer/</c>, <c>scheduler/</c>; float32 or float16, plain or
    /// <c>fp16</c> variant files). The model samples with the folder's scheduler by default
    /// (<c>GenerationOptions.FromDiffusers(folder)</c>); its weights go to <paramref name="device"/> (default: CUDA when
    /// available, else the CPU). A folder of another family (SDXL, SD 3, FLUX) is refused naming the family; a missing or
    /// mismatched component is refused naming it.
    /// </summary>
    public static DiffusionModel Load(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"The Stable Diffusion folder '{path}' does not exist.");
        if (!File.Exists(Path.Combine(path, StableDiffusionPipelineFolder.IndexFile)))
            throw new FileNotFoundException($"'{path}' has no {StableDiffusionPipelineFolder.IndexFile}; a diffusers Stable Diffusion folder starts with one.", Path.Combine(path, StableDiffusionPipelineFolder.IndexFile));
        var parts = StableDiffusionPipelineFolder.Load(path);
        try
        {
            return StableDiffusionModels.Build(parts, device, new ModelSource(ModelSource.DiffusersFolder, Path.GetFullPath(path)));
        }
        catch
        {
            parts.Dispose();
            throw;
        }
    }
}
