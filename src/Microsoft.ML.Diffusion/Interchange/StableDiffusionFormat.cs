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
    /// Loads a Stable Diffusion 1.x/2.x model from a diffusers <c>StableDiffusionPipeline</c> folder (<c>model_index.json</c>,
    /// <c>unet/</c>, <c>vae/</c>, <c>text_encoder/</c>, <c>tokenizer/</c>, <c>scheduler/</c>; float32 or float16, plain or
    /// <c>fp16</c> variant files) or from a single checkpoint file in the original (ldm / A1111) layout (<c>.safetensors</c>,
    /// or a <c>.ckpt</c> whose pickle holds only tensors and plain containers), read tensor by tensor. A single file holds no
    /// tokenizer: give <paramref name="tokenizerFolder"/>, the <c>tokenizer/</c> folder of any diffusers SD model of the same
    /// major version (CLIP's vocabulary). The model samples with its scheduler by default (the folder's; PNDM for single
    /// files, as diffusers' <c>from_single_file</c>); weights go to <paramref name="device"/> (default: CUDA when available,
    /// else the CPU). Other families (SDXL, SD 3, FLUX, inpainting UNets) are refused naming the family; missing or
    /// mismatched components, truncated files and unknown tensors are refused naming them.
    /// </summary>
    public static DiffusionModel Load(string path, Device? device = null, string? tokenizerFolder = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            if (tokenizerFolder is null)
                throw new ArgumentException($"'{path}' is a single checkpoint file, which holds no tokenizer; give the tokenizer/ folder of a diffusers Stable Diffusion model of the same version (CLIP's vocab.json and merges.txt).", nameof(tokenizerFolder));
            return Build(SingleFile.StableDiffusionSingleFile.Load(path, tokenizerFolder), device,
                new ModelSource(ModelSource.SingleFile, Path.GetFullPath(path), Path.GetFullPath(tokenizerFolder)));
        }
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"The Stable Diffusion model '{path}' does not exist (neither a folder nor a file).");
        if (!File.Exists(Path.Combine(path, StableDiffusionPipelineFolder.IndexFile)))
            throw new FileNotFoundException($"'{path}' has no {StableDiffusionPipelineFolder.IndexFile}; a diffusers Stable Diffusion folder starts with one.", Path.Combine(path, StableDiffusionPipelineFolder.IndexFile));
        return Build(StableDiffusionPipelineFolder.Load(path), device, new ModelSource(ModelSource.DiffusersFolder, Path.GetFullPath(path)));
    }

    private static DiffusionModel Build(StableDiffusionParts parts, Device? device, ModelSource source)
    {
        try
        {
            return StableDiffusionModels.Build(parts, device, source);
        }
        catch
        {
            parts.Dispose();
            throw;
        }
    }
}
