using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Storage;

/// <summary>
/// Writes a file so that a failure or a crash mid-write never destroys the previous one: the bytes go to a temporary
/// file beside the target, are flushed to disk, and the temporary file is renamed over the target, so readers see the
/// old file or the new one, whole. A failure (a full disk, an exception from the writer, cancellation) removes the
/// temporary file, leaves the target as it was and propagates; an I/O error says which file was being saved. A process
/// killed mid-write leaves its temporary file behind; the next save to the same path removes it.
/// </summary>
internal static class AtomicFile
{
    /// <summary>
    /// Wraps the temporary file's stream before the writer sees it, given the target's full path: tests inject a
    /// failing stream here. Null, the default, in production. Per asynchronous flow, so parallel tests do not meet.
    /// </summary>
    internal static readonly AsyncLocal<Func<string, Stream, Stream>?> StreamWrapper = new();

    /// <summary>
    /// Creates <paramref name="path"/>'s folder if needed and writes the file through <paramref name="write"/>, which
    /// must not close the stream. A symbolic link is kept: the file it points to is replaced.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Target(path);
        string dir = Path.GetDirectoryName(full)!;
        string temp = Path.Combine(dir, $"{TempPrefix(full)}{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        bool existed = File.Exists(full);
        try
        {
            Directory.CreateDirectory(dir);
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(StreamWrapper.Value is { } wrap ? wrap(full, stream) : stream);
                stream.Flush(flushToDisk: true);   // the bytes are on disk before the name points at them
            }
            if (existed && !OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, File.GetUnixFileMode(full));
            File.Move(temp, full, overwrite: true);
        }
        catch (IOException e)
        {
            TryDelete(temp);
            throw new IOException($"Could not write '{full}': {e.Message.TrimEnd('.')}. {Unchanged(existed)}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            TryDelete(temp);
            throw new UnauthorizedAccessException($"Could not write '{full}': {e.Message.TrimEnd('.')}. {Unchanged(existed)}", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        SyncDirectory(dir);
        RemoveAbandoned(full);
    }

    private static string Unchanged(bool existed) => existed ? "The previous file is unchanged." : "No file was created.";

    // The file a symbolic link points to, so the link survives the rename; the path itself otherwise.
    private static string Target(string path)
    {
        string full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        return info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target ? target.FullName : full;
    }

    // ".<name>." with the name shortened, so the temporary name stays within the 255 bytes file systems allow.
    private static string TempPrefix(string full)
    {
        string name = Path.GetFileName(full);
        return $".{(name.Length > 100 ? name[..100] : name)}.";
    }

    private static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The failure being reported matters more than a leftover; the next save removes it.
        }
    }

    // The rename is durable only once the folder's entry is: on Linux, fsync the folder. .NET opens no handle on a
    // folder (FileStream and File.OpenHandle refuse one), so this goes through libc. Best effort: the new file is in
    // place either way, and file systems that cannot sync a folder say EINVAL. Windows offers no such call.
    private static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            int fd = open(dir, O_RDONLY | O_CLOEXEC);
            if (fd < 0) return;
            fsync(fd);
            close(fd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc (e.g. musl): the rename stands, only its durability on power loss is not forced
        }
    }

    // Temporary files of earlier saves to this path whose process no longer runs (killed mid-write).
    private static void RemoveAbandoned(string full)
    {
        try
        {
            string prefix = TempPrefix(full);
            foreach (string file in Directory.EnumerateFiles(Path.GetDirectoryName(full)!, prefix + "*.tmp"))
            {
                if (!Path.GetFileName(file).StartsWith(prefix, StringComparison.Ordinal)) continue;   // a name with wildcards matched more
                string[] parts = Path.GetFileName(file)[prefix.Length..^".tmp".Length].Split('.');
                if (parts is [var pid, var id] && id.Length == 32 && int.TryParse(pid, out int process)
                    && process != Environment.ProcessId && !Running(process))
                    TryDelete(file);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // tidying only: the save itself succeeded
        }
    }

    private static bool Running(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

    [DllImport("libc.so.6", EntryPoint = "open")]
    private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc.so.6", EntryPoint = "fsync")]
    private static extern int fsync(int fd);

    [DllImport("libc.so.6", EntryPoint = "close")]
    private static extern int close(int fd);
}
