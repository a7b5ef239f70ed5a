namespace Microsoft.ML.Diffusion.Storage;

/// <summary>
/// Writes a file so that a crash mid-write never destroys the previous one: to a temporary file beside
/// it, flushed to disk, then renamed over the target.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Creates <paramref name="path"/>'s folder if needed and writes the file through <paramref name="write"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        // Unique per process and call, so concurrent writers never share a temporary file.
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
