using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Runtime;

/// <summary>
/// The one place where the library chooses a device and sets up libtorch's threads, so that CPU and
/// CUDA behave the same everywhere else.
/// </summary>
public static class DiffusionDevice
{
    private static int _initialized;

    /// <summary>
    /// The device for <paramref name="requested"/>: "auto" (or null) picks CUDA when libtorch has it and
    /// the CPU otherwise; "cpu", "cuda" and "cuda:N" ask for one explicitly.
    /// </summary>
    public static Device Resolve(string? requested = null)
    {
        EnsureInitialized();
        string name = string.IsNullOrWhiteSpace(requested) ? "auto" : requested.Trim().ToLowerInvariant();
        if (name == "auto") return cuda.is_available() ? CUDA : CPU;
        if (name == "cpu") return CPU;
        if (name.StartsWith("cuda", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new InvalidOperationException($"Device '{requested}' was requested, but libtorch reports no CUDA device. Reference a CUDA libtorch runtime package and check the driver, or use \"cpu\".");
            return new Device(name);
        }
        throw new ArgumentException($"Unknown device '{requested}'. Use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\".", nameof(requested));
    }

    /// <summary>
    /// Loads libtorch, sets the intra-op thread count to the machine's cores, tunes the native allocator
    /// (<see cref="NativeAllocatorTuning"/>) and picks libtorch's element-wise CPU kernels
    /// (<see cref="CpuKernelCapability"/>), once per process.
    /// Throws a clear error when the native runtime cannot load (e.g. libstdc++ too old).
    /// </summary>
    public static void EnsureInitialized()
    {
        if (Interlocked.Exchange(ref _initialized, 1) == 1) return;
        CpuKernelCapability.Apply();   // before libtorch runs its first CPU kernel
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _initialized = 0;
            throw new InvalidOperationException(
                "TorchSharp's native library (libtorch) could not be loaded. The application must reference a libtorch runtime package " +
                "(e.g. libtorch-cpu-linux-x64), and on Linux libstdc++ must provide GLIBCXX_3.4.32 (GCC 13+); run eng/install-prerequisites.sh. " +
                "Inner error: " + e.Message, e);
        }
        torch.set_num_threads(Environment.ProcessorCount);
        NativeAllocatorTuning.Apply();
    }
}
