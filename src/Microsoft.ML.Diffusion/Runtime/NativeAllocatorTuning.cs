using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Runtime;

/// <summary>
/// Keeps glibc's malloc from handing a UNet's activations back to the kernel after every step.
/// </summary>
/// <remarks>
/// libtorch allocates CPU tensors with malloc. glibc serves large blocks with mmap and unmaps them on free, and
/// trims free memory at the top of its heaps; a network whose activations are megabytes each then faults every
/// page in again at every step. On the 2-core benchmark machine that was 20,000–60,000 page faults and up to
/// half of the time of each 3×32×32 sampling step. Serving blocks up to 32 MiB (glibc's largest allowed
/// threshold) from the heap and trimming only past 1 GiB of free memory keeps reused memory mapped. The cost:
/// the process keeps memory it has freed, up to its peak, instead of returning it. Set
/// <see cref="DisableVariable"/> to 1 to keep glibc's defaults.
/// </remarks>
public static class NativeAllocatorTuning
{
    /// <summary>Environment variable that, set to 1, leaves the allocator alone.</summary>
    public const string DisableVariable = "MLDIFFUSION_KEEP_MALLOC_DEFAULTS";

    /// <summary>Largest block served from the heap rather than by mmap.</summary>
    public const int MmapThresholdBytes = 32 << 20;

    /// <summary>Free memory at a heap's top beyond which glibc returns it to the kernel.</summary>
    public const int TrimThresholdBytes = 1 << 30;

    private const int M_TRIM_THRESHOLD = -1;
    private const int M_MMAP_THRESHOLD = -3;

    /// <summary>Whether the thresholds were set in this process.</summary>
    public static bool Applied { get; private set; }

    /// <summary>Sets the thresholds on Linux with glibc unless disabled; false where it did nothing.</summary>
    public static bool Apply()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(DisableVariable) == "1") return false;
        try
        {
            // Both, even if the first fails: each helps on its own.
            bool mmap = mallopt(M_MMAP_THRESHOLD, MmapThresholdBytes) == 1;
            bool trim = mallopt(M_TRIM_THRESHOLD, TrimThresholdBytes) == 1;
            Applied = mmap && trim;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Applied = false;   // not glibc (e.g. musl): nothing to tune
        }
        return Applied;
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
