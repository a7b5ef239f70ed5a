using System.Globalization;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

/// <summary>One reading of the process's memory, taken after a full garbage collection.</summary>
/// <param name="LiveTensors">TorchSharp tensors alive on this thread: exact, the sharpest leak detector.</param>
/// <param name="NativeHeapBytes">Bytes glibc's malloc has handed out and not had back (all arenas); NaN off glibc.</param>
/// <param name="ManagedHeapBytes">Bytes in the .NET heap after a full collection.</param>
/// <param name="ResidentMiB">Resident set size; moves with allocator plateaus, so reported, not judged.</param>
public readonly record struct MemoryReading(long LiveTensors, double NativeHeapBytes, double ManagedHeapBytes, double ResidentMiB);

/// <summary>Reads <see cref="MemoryReading"/>s.</summary>
public static class MemoryProbe
{
    public static MemoryReading Read()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return new MemoryReading(
            DisposeScopeManager.Statistics.ThreadTotalLiveCount,
            NativeHeapBytes(),
            GC.GetTotalMemory(forceFullCollection: true),
            ResidentMiB());
    }

    // glibc's struct mallinfo2: ten size_t fields. In use = uordblks (arena chunks) + hblkhd (mmapped chunks).
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [DllImport("libc.so.6", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 mallinfo2();

    private static double NativeHeapBytes()
    {
        if (!OperatingSystem.IsLinux()) return double.NaN;
        try
        {
            var info = mallinfo2();
            return (double)info.UordBlks + info.HBlkHd;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return double.NaN;   // not glibc 2.33+
        }
    }

    private static double ResidentMiB()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return double.NaN;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }
}
