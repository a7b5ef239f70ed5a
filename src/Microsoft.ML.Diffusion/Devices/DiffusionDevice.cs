using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Devices;

/// <summary>
/// The one place where the library chooses a device and sets up libtorch's threads, so that CPU and
/// CUDA behave the same everywhere else.
/// </summary>
public static class DiffusionDevice
{
    private static readonly object Gate = new();
    private static NativeRuntimeOptions? _configured;
    private static volatile NativeRuntimeOptions? _applied;

    /// <summary>
    /// Chooses the process-wide native settings. Call it before the library's first model, trainer, network or tensor
    /// operation; afterwards the settings are fixed and another choice is an error.
    /// </summary>
    public static void Configure(NativeRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ThreadCount is < 0) throw new ArgumentOutOfRangeException(nameof(options), options.ThreadCount, "ThreadCount must not be negative.");
        lock (Gate)
        {
            if (_applied is not null && _applied != options.WithEnvironment())
                throw new InvalidOperationException("The native settings were already applied (by the library's first model, trainer or network); call DiffusionDevice.Configure before that.");
            _configured = options;
        }
    }

    /// <summary>The native settings in effect, or null before <see cref="EnsureInitialized"/> ran.</summary>
    public static NativeRuntimeOptions? Settings => _applied;

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

    /// <summary>Whether two devices are the same one (TorchSharp's <see cref="Device"/> compares by reference).</summary>
    internal static bool Same(Device a, Device b) => a.type == b.type && Math.Max(a.index, 0) == Math.Max(b.index, 0);

    /// <summary>
    /// Applies the native settings (<see cref="Configure"/>, else the defaults, with the environment's overrides), loads
    /// libtorch and sets its thread count, once per process. Every path into the library calls it before building a network;
    /// call it yourself first if your own tensor operations run before the library's and results must match a fresh
    /// process bit for bit. Throws a clear error when the native runtime cannot load (e.g. libstdc++ too old).
    /// </summary>
    public static void EnsureInitialized()
    {
        if (_applied is not null) return;
        lock (Gate)
        {
            if (_applied is not null) return;
            var settings = (_configured ?? new NativeRuntimeOptions()).WithEnvironment();
            if (settings.PreferAvx2Kernels) CpuKernelCapability.Apply();   // before libtorch runs its first CPU kernel
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new InvalidOperationException(
                    "TorchSharp's native library (libtorch) could not be loaded. The application must reference a libtorch runtime package " +
                    "(e.g. libtorch-cpu-linux-x64), and on Linux libstdc++ must provide GLIBCXX_3.4.32 (GCC 13+); run eng/install-prerequisites.sh. " +
                    "Inner error: " + e.Message, e);
            }
            int threads = settings.ThreadCount ?? Environment.ProcessorCount;
            if (threads > 0) torch.set_num_threads(threads);
            if (settings.TuneAllocator) NativeAllocatorTuning.Apply();
            _applied = settings;
        }
    }
}
