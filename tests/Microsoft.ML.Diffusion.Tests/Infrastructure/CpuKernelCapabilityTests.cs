using System.Runtime.InteropServices;
using Microsoft.ML.Diffusion.Devices;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

public class CpuKernelCapabilityTests
{
    // The test host already chose the kernels in TestAssemblySetup, as the library does in a fresh process; that
    // EnsureInitialized does it there is checked by PipelineRoundTripTests.AFreshProcessLoadsTheZipAndGeneratesTheSameImages,
    // which compares this host's images with a fresh process's bit for bit.
    [SkippableFact]
    public void TheNativeEnvironmentAsksLibtorchForAvx2KernelsAndAValueAlreadySetIsKept()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64, "set on x64 Linux only");
        Skip.If(Environment.GetEnvironmentVariable(CpuKernelCapability.Variable) is not null, "the environment chose a capability");
        DiffusionDevice.EnsureInitialized();
        Assert.Equal(CpuKernelCapability.Preferred, CpuKernelCapability.Current());
        Assert.False(CpuKernelCapability.Apply(), "a value already in the native environment is left alone");
    }
}
