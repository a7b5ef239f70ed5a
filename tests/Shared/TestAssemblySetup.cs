using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.ML.Diffusion.Devices;

namespace Microsoft.ML.Diffusion.Testing;

/// <summary>Process-wide settings each test assembly makes before its first test (compiled into both test projects).</summary>
internal static class TestAssemblySetup
{
#pragma warning disable CA2255 // a test assembly, not a library: running first is the point
    [ModuleInitializer]
    internal static void Configure()
    {
        ShareTheCores();
        ChooseCpuKernels();
    }
#pragma warning restore CA2255

    /// <summary>
    /// <c>dotnet test MLDiffusion.sln</c> runs both test assemblies at the same time, each one test at a time. Two
    /// libtorch thread pools as wide as the machine would fight over the same cores (on 2 cores that doubles the
    /// suite's time), so each test host takes half of them; processes the tests start inherit the share. A value
    /// set by the caller wins.
    /// </summary>
    private static void ShareTheCores()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(NativeRuntimeOptions.ThreadsVariable))) return;
        int share = Math.Max(1, Environment.ProcessorCount / 2);
        Environment.SetEnvironmentVariable(NativeRuntimeOptions.ThreadsVariable, share.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Chooses libtorch's CPU kernels before any test runs a tensor operation, as the library does in a fresh
    /// process: otherwise a test that touches TorchSharp first fixes AVX-512 kernels for the whole test host,
    /// and results compared bit for bit with a fresh process differ in the last digits.
    /// </summary>
    private static void ChooseCpuKernels() => CpuKernelCapability.Apply();
}
