using System.Diagnostics;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>
/// A tmpfs of a given size mounted on a fresh folder, where a write beyond the size fails with the system's own
/// "No space left on device" (ENOSPC). Mounting needs root with CAP_SYS_ADMIN; elsewhere the test is skipped, saying
/// why, and the injected-failure tests (AtomicFileTests) carry the guarantee.
/// </summary>
internal sealed class SmallFileSystem : IDisposable
{
    public string Folder { get; }

    private SmallFileSystem(string folder) => Folder = folder;

    public static SmallFileSystem Mount(long bytes)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "a size-limited tmpfs needs Linux.");
        string folder = Directory.CreateTempSubdirectory("mldiffusion-tmpfs-").FullName;
        var (code, output) = Run("mount", "-t", "tmpfs", "-o", $"size={bytes},mode=0700", "tmpfs", folder);
        if (code != 0)
        {
            Directory.Delete(folder);
            Skip.If(true, $"mount -t tmpfs is not permitted here ({output.Trim()}); AtomicFileTests' injected failures carry the guarantee.");
        }
        return new SmallFileSystem(folder);
    }

    public void Dispose()
    {
        if (Run("umount", Folder).Code != 0) Run("umount", "-l", Folder);
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }

    private static (int Code, string Output) Run(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        try
        {
            using var process = System.Diagnostics.Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, stdout + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"{program}: {e.Message}");   // no such program
        }
    }
}
