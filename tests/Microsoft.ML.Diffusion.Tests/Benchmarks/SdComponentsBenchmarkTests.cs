using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Benchmarks;

/// <summary>
/// Keeps the benchmark's --sd-components mode (the C# side of benchmarks/sd_lockstep.py) running: at --sd-size tiny it
/// builds the three Stable Diffusion networks of the same block kinds, times each once and prints one JSON line per
/// component with the fields the driver reads. The parameter counts are those diffusers_sd_components.py --size tiny
/// reports for diffusers' UNet2DConditionModel and AutoencoderKL and openai/CLIP's text transformer, so the two sides'
/// tiny networks stay the same size.
/// </summary>
public sealed class SdComponentsBenchmarkTests
{
    [Theory]
    [InlineData("float32")]
    [InlineData("bfloat16")]
    public async Task TinyComponentsRunAndReportTimeAndMemory(string dtype)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { BenchmarkDll(), "--sd-components", "--sd-size", "tiny", "--sd-dtype", dtype, "--repeats", "1", "--threads", "1" })
            start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        var stdoutTask = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"the benchmark did not finish in a minute: {await stderrTask}");
        }
        string stdout = await stdoutTask, stderr = await stderrTask;
        Assert.True(process.ExitCode == 0, $"the benchmark failed ({process.ExitCode}): {stderr}\n{stdout}");

        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => l.StartsWith('{')).ToArray();
        var expected = new (string Component, long Parameters)[] { ("unet", 792_964), ("text", 57_696), ("vae", 658_375) };
        Assert.Equal(expected.Length, lines.Length);
        foreach (var ((component, parameters), line) in expected.Zip(lines))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            Assert.Equal(component, r.GetProperty("component").GetString());
            Assert.Equal(dtype, r.GetProperty("dtype").GetString());
            Assert.Equal(parameters, r.GetProperty("parameters").GetInt64());
            Assert.Equal(1, r.GetProperty("threads").GetInt32());
            Assert.Single(r.GetProperty("seconds").EnumerateArray());
            foreach (var field in new[] { "median_seconds", "median_cpu_seconds", "baseline_rss_mb", "peak_rss_mb" })
            {
                double value = r.GetProperty(field).GetDouble();
                Assert.True(double.IsFinite(value) && value >= 0, $"{component}: {field} is {value}");
            }
            Assert.True(r.GetProperty("peak_rss_mb").GetDouble() >= r.GetProperty("baseline_rss_mb").GetDouble(), $"{component}: peak below the baseline");
        }
    }

    // tests/Microsoft.ML.Diffusion.Tests/bin/<config>/<tfm>/ → benchmarks/Microsoft.ML.Diffusion.Benchmarks/bin/<config>/<tfm>/,
    // built with the tests (the test project references it without using its assembly).
    internal static string BenchmarkDll()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = testDir.Name, config = testDir.Parent!.Name;
        var root = testDir;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "MLDiffusion.sln"))) root = root.Parent;
        Assert.True(root is not null, "the repository root (MLDiffusion.sln) is not above " + AppContext.BaseDirectory);
        string dll = Path.Combine(root!.FullName, "benchmarks", "Microsoft.ML.Diffusion.Benchmarks", "bin", config, tfm, "Microsoft.ML.Diffusion.Benchmarks.dll");
        Assert.True(File.Exists(dll), $"the benchmark was not built at {dll}");
        return dll;
    }
}
