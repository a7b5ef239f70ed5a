using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>Resident memory of this process from /proc/self/status (Linux).</summary>
internal static class ProcessMemory
{
    /// <summary>Peak resident set size (VmHWM) in MiB, or NaN where /proc is missing.</summary>
    public static double PeakResidentMiB() => ReadKiB("VmHWM:") / 1024.0;

    /// <summary>Current resident set size (VmRSS) in MiB, or NaN where /proc is missing.</summary>
    public static double ResidentMiB() => ReadKiB("VmRSS:") / 1024.0;

    /// <summary>Current resident set size (VmRSS) of process <paramref name="pid"/> in MiB, or NaN when it has gone or /proc is missing.</summary>
    public static double ResidentMiB(int pid)
    {
        try
        {
            return ReadKiB("VmRSS:", $"/proc/{pid}/status") / 1024.0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return double.NaN;   // the process ended between the look and the read
        }
    }

    /// <summary>
    /// MiB glibc's malloc has handed out and not had back (all arenas: mallinfo2's uordblks + hblkhd), or NaN off glibc 2.33+.
    /// Unlike RSS it does not move with pages the allocator keeps for reuse, so a leak of native tensors shows in it first.
    /// </summary>
    public static double NativeHeapMiB()
    {
        if (!OperatingSystem.IsLinux()) return double.NaN;
        try
        {
            var info = mallinfo2();
            return ((double)info.UordBlks + info.HBlkHd) / (1 << 20);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return double.NaN;
        }
    }

    // glibc's struct mallinfo2: ten size_t fields.
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [DllImport("libc.so.6", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 mallinfo2();

    /// <summary>Minor page faults of the process so far (field 10 of /proc/self/stat), or 0 where /proc is missing.</summary>
    public static long MinorFaults()
    {
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7], System.Globalization.CultureInfo.InvariantCulture);   // field 10 overall
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    /// <summary>Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs, Linux 4.0+); false if not possible.</summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Full managed collection, so the finalizers of unreferenced tensors free their native memory.</summary>
    public static void CollectGarbage()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    private static double ReadKiB(string key, string status = "/proc/self/status")
    {
        if (!File.Exists(status)) return double.NaN;
        foreach (var line in File.ReadLines(status))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return double.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        return double.NaN;
    }
}
