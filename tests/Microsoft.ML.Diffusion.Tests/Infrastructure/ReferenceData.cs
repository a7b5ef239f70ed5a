using System.Text.Json;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

/// <summary>The shared reference values (../shared/reference/ddpm_reference.json beside the repository).</summary>
public static class ReferenceData
{
    private static readonly Lazy<JsonDocument> Document = new(() => JsonDocument.Parse(File.ReadAllText(FindFile())));

    public static JsonElement Root => Document.Value.RootElement;

    public static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    public static float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();

    public static long[] Shape(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt64()).ToArray();

    private static string FindFile()
    {
        string? env = Environment.GetEnvironmentVariable("MLDIFFUSION_REFERENCE");
        if (!string.IsNullOrEmpty(env) && File.Exists(env)) return env;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MLDiffusion.sln")))
            {
                string candidate = Path.Combine(dir.FullName, "..", "shared", "reference", "ddpm_reference.json");
                if (File.Exists(candidate)) return Path.GetFullPath(candidate);
                throw new FileNotFoundException($"The reference values are expected at {Path.GetFullPath(candidate)} (shared/ beside the repository), or at the path in MLDIFFUSION_REFERENCE.");
            }
            dir = dir.Parent;
        }
        throw new FileNotFoundException("Could not find the repository root (MLDiffusion.sln) above " + AppContext.BaseDirectory);
    }
}
