namespace Microsoft.ML.Diffusion.Devices;

/// <summary>
/// The process-wide native settings the library makes once, before libtorch runs its first kernel
/// (<see cref="DiffusionDevice.EnsureInitialized"/>). Each is on by default, can be turned off here through
/// <see cref="DiffusionDevice.Configure"/>, and can be turned off from outside by an environment variable, which wins.
/// </summary>
public sealed record NativeRuntimeOptions
{
    /// <summary>Environment variable that, set to 1, keeps glibc's malloc defaults (<see cref="TuneAllocator"/> off).</summary>
    public const string KeepMallocDefaultsVariable = "MLDIFFUSION_KEEP_MALLOC_DEFAULTS";

    /// <summary>Environment variable that, set to 1, leaves libtorch's CPU kernel choice alone (<see cref="PreferAvx2Kernels"/> off).</summary>
    public const string KeepCpuCapabilityVariable = "MLDIFFUSION_KEEP_CPU_CAPABILITY";

    /// <summary>Environment variable holding libtorch's intra-op thread count; 0 leaves libtorch's own choice.</summary>
    public const string ThreadsVariable = "MLDIFFUSION_THREADS";

    /// <summary>
    /// Linux with glibc: switch off malloc's mmap for large blocks and keep freed memory mapped, so a network's activations
    /// are not faulted in page by page at every step (slow in virtual machines). The process keeps memory it freed, up to
    /// its peak. See <see cref="KeepMallocDefaultsVariable"/>.
    /// </summary>
    public bool TuneAllocator { get; init; } = true;

    /// <summary>
    /// x64 Linux: run libtorch's element-wise CPU kernels with AVX2 instead of AVX-512 (sets <c>ATEN_CPU_CAPABILITY=avx2</c>
    /// unless the application set it). On some AVX-512 machines libtorch 2.10's AVX-512 SiLU sends a process into a state
    /// where the network runs ≈ 1.8× slower. Convolutions and matrix products (oneDNN) choose their instructions themselves.
    /// See <see cref="KeepCpuCapabilityVariable"/>.
    /// </summary>
    public bool PreferAvx2Kernels { get; init; } = true;

    /// <summary>libtorch's intra-op threads: null uses every core the process may run on, 0 leaves libtorch's own choice. See <see cref="ThreadsVariable"/>.</summary>
    public int? ThreadCount { get; init; }

    /// <summary>These options with the environment's overrides applied.</summary>
    public NativeRuntimeOptions WithEnvironment()
    {
        var result = this;
        if (Environment.GetEnvironmentVariable(KeepMallocDefaultsVariable) == "1") result = result with { TuneAllocator = false };
        if (Environment.GetEnvironmentVariable(KeepCpuCapabilityVariable) == "1") result = result with { PreferAvx2Kernels = false };
        if (Environment.GetEnvironmentVariable(ThreadsVariable) is { Length: > 0 } threads)
        {
            if (!int.TryParse(threads, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int count))
                throw new InvalidOperationException($"{ThreadsVariable} must be a whole number of threads (0 for libtorch's own choice), not '{threads}'.");
            result = result with { ThreadCount = count };
        }
        return result;
    }
}
