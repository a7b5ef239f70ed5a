using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Devices;

/// <summary>
/// Keeps glibc's malloc from handing a UNet's activations back to the kernel after every step.
/// </summary>
/// <remarks>
/// libtorch allocates CPU tensors with malloc. glibc serves blocks of 32 MiB and more (its largest allowed
/// mmap threshold) with a fresh mmap and unmaps them on free, and trims free memory at the top of its heaps,
/// so a network whose activations are megabytes each faults every page in again at every step. That is
/// slow anywhere and very slow in a virtual machine: on the 2-core benchmark machine an element-wise op on a
/// 64×128×32×32 tensor (exactly 32 MiB) took 75 ms against 2 ms one channel smaller, and the 3×32×32
/// benchmark network has several such activations per forward. With mmap switched off, every block comes
/// from a heap and, once freed, is reused. Trimming only past 1 GiB of free memory keeps the main heap
/// mapped; a 64 MiB top pad (the size of a thread arena's heap) keeps glibc from unmapping a thread arena's
/// heap the moment it is empty, which it otherwise does whatever the trim threshold. The cost: the process
/// keeps memory it has freed, up to its peak, instead of returning it. <see cref="NativeRuntimeOptions.TuneAllocator"/> turns it off.
/// </remarks>
internal static class NativeAllocatorTuning
{
    /// <summary>Free memory at a heap's top beyond which glibc returns it to the kernel.</summary>
    public const int TrimThresholdBytes = 1 << 30;

    /// <summary>Free memory glibc keeps at the top of a heap when it trims, and adds when it grows one.</summary>
    public const int TopPadBytes = 64 << 20;

    private const int M_TRIM_THRESHOLD = -1;
    private const int M_TOP_PAD = -2;
    private const int M_MMAP_MAX = -4;

    /// <summary>Whether the settings were made in this process.</summary>
    public static bool Applied { get; private set; }

    /// <summary>Turns off malloc's use of mmap and raises its trim threshold and top pad on Linux with glibc; false where it did nothing.</summary>
    public static bool Apply()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            // All three, even if one fails: each helps on its own. Blocks larger than a thread arena's heap
            // (64 MiB) come from the main heap, which glibc grows as needed.
            bool mmap = mallopt(M_MMAP_MAX, 0) == 1;
            bool trim = mallopt(M_TRIM_THRESHOLD, TrimThresholdBytes) == 1;
            bool pad = mallopt(M_TOP_PAD, TopPadBytes) == 1;
            Applied = mmap && trim && pad;
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
