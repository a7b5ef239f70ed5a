using System.Runtime.CompilerServices;
using Microsoft.ML.Diffusion.Runtime;

namespace Microsoft.ML.Diffusion.Tests;

internal static class TestAssemblySetup
{
    /// <summary>
    /// Chooses libtorch's CPU kernels before any test runs a tensor operation, as the library does in a fresh
    /// process: otherwise a test that touches TorchSharp first fixes AVX-512 kernels for the whole test host,
    /// and results compared bit for bit with a fresh process differ in the last digits.
    /// </summary>
#pragma warning disable CA2255 // a test assembly, not a library: running first is the point
    [ModuleInitializer]
    internal static void ChooseCpuKernels() => CpuKernelCapability.Apply();
#pragma warning restore CA2255
}
