using Microsoft.ML.Diffusion.Runtime;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

public class NativeAllocatorTuningTests
{
    [SkippableFact]
    public void TheLibrarysSetupTunesGlibcMalloc()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && (File.Exists("/lib/x86_64-linux-gnu/libc.so.6") || File.Exists("/lib/aarch64-linux-gnu/libc.so.6")),
            "glibc's malloc is tuned on Linux with glibc only");
        Skip.If(Environment.GetEnvironmentVariable(NativeAllocatorTuning.DisableVariable) == "1", "disabled by the environment");
        DiffusionDevice.EnsureInitialized();
        Assert.True(NativeAllocatorTuning.Applied, "EnsureInitialized should have set glibc's mmap and trim thresholds");
        Assert.True(NativeAllocatorTuning.Apply(), "mallopt accepts the thresholds (32 MiB is glibc's largest mmap threshold)");
    }
}
