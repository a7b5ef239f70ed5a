using System.Runtime.InteropServices;
using Microsoft.ML.Diffusion.Devices;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

public class NativeAllocatorTuningTests
{
    private const int PageSize = 4096;

    private static void SkipUnlessTuned()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && (File.Exists("/lib/x86_64-linux-gnu/libc.so.6") || File.Exists("/lib/aarch64-linux-gnu/libc.so.6")),
            "glibc's malloc is tuned on Linux with glibc only");
        Skip.If(Environment.GetEnvironmentVariable(NativeRuntimeOptions.KeepMallocDefaultsVariable) == "1", "disabled by the environment");
    }

    [SkippableFact]
    public void TheLibrarysSetupTunesGlibcMalloc()
    {
        SkipUnlessTuned();
        DiffusionDevice.EnsureInitialized();
        Assert.True(NativeAllocatorTuning.Applied, "EnsureInitialized should have switched off malloc's mmap and raised its trim threshold and top pad");
        Assert.True(NativeAllocatorTuning.Apply(), "mallopt accepts all three settings");
    }

    [SkippableFact]
    public void ALargeBlockIsReusedWithoutFaultingItsPagesAgain()
    {
        // Untuned, glibc serves 40 MiB with a fresh mmap and unmaps it on free, so the second block's 10,240 pages
        // fault in again; tuned, the second malloc gets the first block's memory back, still mapped.
        SkipUnlessTuned();
        DiffusionDevice.EnsureInitialized();
        const int bytes = 40 << 20;
        Touch(bytes);
        long second = Touch(bytes);
        Assert.True(second < bytes / PageSize / 4, $"the reused 40 MiB block took {second} page faults (untuned: about {bytes / PageSize})");
    }

    /// <summary>Mallocs, writes one byte per page, frees; returns this thread's minor page faults meanwhile.</summary>
    private static long Touch(int bytes)
    {
        long before = ThreadMinorFaults();
        IntPtr p = malloc((nuint)bytes);
        Assert.NotEqual(IntPtr.Zero, p);
        try
        {
            for (int offset = 0; offset < bytes; offset += PageSize) Marshal.WriteByte(p, offset, 1);
        }
        finally
        {
            free(p);
        }
        return ThreadMinorFaults() - before;
    }

    private static long ThreadMinorFaults()
    {
        string stat = File.ReadAllText("/proc/thread-self/stat");
        // Fields after "(comm) ": state ppid pgrp session tty_nr tpgid flags minflt ...
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[7], System.Globalization.CultureInfo.InvariantCulture);
    }

    [DllImport("libc.so.6")]
    private static extern IntPtr malloc(nuint size);

    [DllImport("libc.so.6")]
    private static extern void free(IntPtr ptr);
}
