using System.Diagnostics;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

/// <summary>
/// Tests checked against diffusers itself: they need Debian's python3-torch and a diffusers v0.21.x checkout
/// (MLDIFFUSION_DIFFUSERS_SRC = its src folder), which this project's CI cannot download, so they skip without them;
/// TestData/Diffusers/README.md says how to get both.
/// </summary>
public static class DiffusersCheckout
{
    /// <summary>The checkout's src folder; skips the test when none is set.</summary>
    public static string SourceOrSkip()
    {
        string? source = Environment.GetEnvironmentVariable("MLDIFFUSION_DIFFUSERS_SRC");
        Skip.If(string.IsNullOrEmpty(source) || !Directory.Exists(Path.Combine(source, "diffusers")),
            "Set MLDIFFUSION_DIFFUSERS_SRC to the src folder of a diffusers v0.21.x checkout (and install python3-torch) to run this test.");
        return source!;
    }

    /// <summary>Runs a TestData/Diffusers check script on <paramref name="folder"/> and asserts that diffusers agrees.</summary>
    public static void Check(string script, string source, string folder)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", script);
        var start = new ProcessStartInfo("/usr/bin/python3", ["-W", "ignore", path, "--diffusers", source, "--folder", folder])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["OPENBLAS_NUM_THREADS"] = "1";   // the system BLAS on one thread, as the fixtures were made
        using var python = System.Diagnostics.Process.Start(start)!;
        string output = python.StandardOutput.ReadToEnd(), errors = python.StandardError.ReadToEnd();
        python.WaitForExit();
        Assert.True(python.ExitCode == 0, $"diffusers disagrees: {output}\n{errors}");
        Assert.Contains("match", output);
    }
}
