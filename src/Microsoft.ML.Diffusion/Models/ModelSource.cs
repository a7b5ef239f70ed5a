using Microsoft.ML.Diffusion.Storage;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// The files a model's weights were loaded from (or last written to): a Stable Diffusion diffusers folder or single
/// checkpoint file, which model zips always refer to instead of copying them, or a pixel-space model's checkpoint file
/// or diffusers folder, which a model zip refers to as the base of the LoRA adapters fused into the model. The SHA-256
/// of the files makes a missing or changed base an error instead of a different model.
/// </summary>
/// <param name="Kind">"diffusers-folder" or "single-file" (Stable Diffusion), "checkpoint" or "diffusers-model" (pixel space).</param>
/// <param name="Path">The folder or file, absolute.</param>
/// <param name="TokenizerFolder">For a Stable Diffusion single file: the tokenizer folder it was loaded with.</param>
/// <param name="Sha256">
/// Hex SHA-256 over the weight files: for pixel-space models computed when they are read or written (a zip then refuses
/// files changed since), for Stable Diffusion models when a zip is saved (null until then: gigabytes are not hashed on
/// every load).
/// </param>
internal sealed record ModelSource(string Kind, string Path, string? TokenizerFolder = null, string? Sha256 = null)
{
    public const string DiffusersFolder = "diffusers-folder";
    public const string SingleFile = "single-file";

    /// <summary>A checkpoint file of the library's format (<see cref="DiffusionModel.Load(string, TorchSharp.torch.Device?)"/>, <see cref="DiffusionModel.Save(string)"/>).</summary>
    public const string Checkpoint = "checkpoint";

    /// <summary>A pixel-space diffusers model folder (<c>DiffusersFormat.Load</c>, <c>SaveDiffusers</c>).</summary>
    public const string DiffusersModel = "diffusers-model";

    /// <summary>The model of a checkpoint file, identified by its bytes.</summary>
    public static ModelSource OfCheckpoint(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        return new ModelSource(Checkpoint, full, Sha256: FileChecksum.Sha256(full));
    }
}
