using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>The device an ML.NET context asks for, read from its settings; the only place the device choice meets ML.NET.</summary>
internal static class EnvironmentDevice
{
    /// <summary>
    /// The device for a model that an ML.NET context loads from a zip: the GPU the context names
    /// (<c>MLContext.GpuDeviceId</c>), or the CPU when it has none and <c>MLContext.FallbackToCpu</c> allows it;
    /// without a GPU id, as <see cref="DiffusionDevice.Resolve"/> chooses for "auto".
    /// </summary>
    public static Device For(IHostEnvironment env)
    {
        DiffusionDevice.EnsureInitialized();
        if (env is not IHostEnvironmentInternal { GpuDeviceId: int id } context) return DiffusionDevice.Resolve("auto");
        if (cuda.is_available() && id < cuda.device_count()) return new Device(DeviceType.CUDA, id);
        if (context.FallbackToCpu) return CPU;
        throw new InvalidOperationException(
            $"The MLContext asks for GPU {id} (GpuDeviceId), but libtorch reports {(cuda.is_available() ? $"{cuda.device_count()} CUDA device(s)" : "no CUDA device")}. " +
            "Set FallbackToCpu = true to load on the CPU instead, or reference a CUDA libtorch runtime package.");
    }
}
