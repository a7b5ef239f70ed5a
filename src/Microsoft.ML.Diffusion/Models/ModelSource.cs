namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// Where a model's weights live when they are not the library's to copy: a diffusers folder or a single checkpoint
/// file, with the SHA-256 of its weight files when it was saved by reference (model zips hold this, not gigabytes of
/// weights), so a missing or changed file is refused.
/// </summary>
/// <param name="Kind">"diffusers-folder" or "single-file".</param>
/// <param name="Path">The folder or file, as given when it was loaded.</param>
/// <param name="TokenizerFolder">For a single file: the tokenizer folder it was loaded with.</param>
/// <param name="Sha256">Hex SHA-256 over the weight files (null until computed).</param>
internal sealed record ModelSource(string Kind, string Path, string? TokenizerFolder = null, string? Sha256 = null)
{
    public const string DiffusersFolder = "diffusers-folder";
    public const string SingleFile = "single-file";
}
