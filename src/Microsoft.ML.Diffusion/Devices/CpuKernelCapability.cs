using System.Runtime.InteropServices;

namespace Microsoft.ML.Diffusion.Devices;

/// <summary>
/// Runs libtorch's element-wise CPU kernels with AVX2 rather than AVX-512 on x64 Linux, unless the
/// application chose otherwise.
/// </summary>
/// <remarks>
/// On the 2-core benchmark machine (AMD EPYC with AVX-512) a process running libtorch 2.10's AVX-512 kernels
/// falls, at some point or from the start, into a state where the exponential inside SiLU
/// (<c>Sleef_finz_expf16_u10avx512f</c>) takes a quarter to a third of the time and the 3×32×32 network's
/// forward pass takes ≈ 0.9 s instead of ≈ 0.5 s, for good. With the AVX2 kernels (what PyTorch 1.13 uses on
/// the same machine) no process showed it, and 3×32×32 sampling ran at 0.85–1.04× PyTorch's time in two
/// lockstep runs (benchmarks/lockstep.py).
/// libtorch reads <c>ATEN_CPU_CAPABILITY</c> once, before its first CPU kernel, so this must run before any
/// tensor operation; the library does it in <see cref="DiffusionDevice.EnsureInitialized"/>. Set
/// <c>ATEN_CPU_CAPABILITY</c> yourself (e.g. to <c>default</c> for libtorch's own choice) to override it.
/// Convolutions and matrix products (oneDNN, MKL) choose their instructions independently of this setting.
/// The two kinds of kernels agree only to the last bits, so a process that ran tensor operations before the
/// library's first call gets slightly different numbers than one that did not: call
/// <see cref="DiffusionDevice.EnsureInitialized"/> first (or set the variable before starting) wherever
/// seeded results must match across processes bit for bit.
/// </remarks>
internal static class CpuKernelCapability
{
    /// <summary>The environment variable libtorch reads.</summary>
    public const string Variable = "ATEN_CPU_CAPABILITY";

    /// <summary>The value set when the application has not set one.</summary>
    public const string Preferred = "avx2";

    /// <summary>Whether this process set the variable.</summary>
    public static bool Applied { get; private set; }

    /// <summary>Sets <see cref="Variable"/> to <see cref="Preferred"/> in the native environment on x64 Linux when unset; false where it did nothing.</summary>
    public static bool Apply()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return false;
        try
        {
            // .NET keeps its own copy of the environment; libtorch reads the C library's.
            if (getenv(Variable) != IntPtr.Zero) return false;
            Applied = setenv(Variable, Preferred, 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Applied = false;
        }
        return Applied;
    }

    /// <summary>The value libtorch will see, or null.</summary>
    public static string? Current()
    {
        if (!OperatingSystem.IsLinux()) return null;
        IntPtr p = getenv(Variable);
        return p == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(p);
    }

    [DllImport("libc.so.6", EntryPoint = "getenv")]
    private static extern IntPtr getenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);
}
