using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>Versions of everything that decides the numbers: TorchSharp, libtorch, .NET, threads, CPU.</summary>
internal static class RuntimeInfo
{
    public static VersionsInfo Collect()
    {
        var asm = typeof(torch).Assembly;
        string torchSharp = asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? asm.GetName().Version?.ToString() ?? "unknown";
        int plus = torchSharp.IndexOf('+');
        if (plus > 0) torchSharp = torchSharp[..plus];
        int? interop = null;
        try { interop = torch.get_num_interop_threads(); } catch (Exception e) when (e is not OutOfMemoryException) { }
        return new VersionsInfo(
            Implementation: "TorchSharp",
            Framework: "TorchSharp",
            FrameworkVersion: torchSharp,
            Libtorch: PackageVersion("libtorch-") ?? "unknown",
            Runtime: RuntimeInformation.FrameworkDescription,
            TorchThreads: torch.get_num_threads(),
            InteropThreads: interop,
            Os: RuntimeInformation.OSDescription,
            Cpu: CpuModel(),
            LogicalCores: Environment.ProcessorCount,
            Note: null);
    }

    // The libtorch runtime package the app was built with, from its deps.json ("libtorch-cpu-linux-x64/2.10.0").
    private static string? PackageVersion(string prefix)
    {
        try
        {
            var deps = Directory.GetFiles(AppContext.BaseDirectory, "*.deps.json").FirstOrDefault();
            if (deps is null) return null;
            using var doc = JsonDocument.Parse(File.ReadAllText(deps));
            foreach (var lib in doc.RootElement.GetProperty("libraries").EnumerateObject())
                if (lib.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                    return lib.Name;
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException) { }
        return null;
    }

    private static string CpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }
}
