using Microsoft.ML.Diffusion.Storage;

namespace Microsoft.ML;

/// <summary>Saving model zips without risking the previous one.</summary>
public static class ModelOperationsCatalogExtensions
{
    /// <summary>
    /// Saves a model zip as <see cref="ModelOperationsCatalog.Save(ITransformer, DataViewSchema, string)"/> does, but never
    /// loses the file it replaces: the zip is written to a temporary file beside <paramref name="filePath"/>, flushed to
    /// disk and renamed over it. If the write fails (a full disk, an error while saving a stage) or the process dies
    /// mid-write, the previous file stays as it was and loads; on failure the temporary file is removed and the exception
    /// names <paramref name="filePath"/>. The disk needs room for the new zip while the old one still exists.
    /// <see cref="ModelOperationsCatalog.Save(ITransformer, DataViewSchema, string)"/> truncates the file first, so a
    /// failure there leaves a broken zip.
    /// </summary>
    /// <param name="catalog">The model operations catalog (<c>mlContext.Model</c>).</param>
    /// <param name="model">The trained model.</param>
    /// <param name="inputSchema">The schema of the model's input (may be null, as for ML.NET's <c>Save</c>).</param>
    /// <param name="filePath">The zip to write; its folder is created if needed.</param>
    /// <exception cref="IOException">The zip could not be written (the message names it; the inner exception is the system's error).</exception>
    public static void SaveAtomically(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema? inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        if (Directory.Exists(filePath))
            throw new ArgumentException($"'{filePath}' is a folder; give the path of the zip to write.", nameof(filePath));
        AtomicFile.Write(filePath, stream => catalog.Save(model, inputSchema, stream));
    }
}
