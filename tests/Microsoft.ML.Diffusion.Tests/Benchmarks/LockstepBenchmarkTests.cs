using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Benchmarks;

/// <summary>
/// Keeps benchmarks/lockstep.py running: both servers (ours and the PyTorch reference) start, agree that their networks
/// are the same (parameter count and the probe forward), and answer every kind of measurement once, at the smallest
/// settings (bench only at batch 8, one warm-up step, two sampling steps of two images).
/// </summary>
public sealed class LockstepBenchmarkTests : IDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly string _out = Directory.CreateTempSubdirectory("lockstep-test-").FullName;

    [SkippableFact]
    public void BothSidesGetReadyAndAnswerEveryMeasurement()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists(Python) && Succeeds(Python, "-c", "import torch"),
            "The lockstep benchmark needs /usr/bin/python3 with torch (Debian's python3-torch 1.13 and OpenBLAS): " +
            "run 'sudo bash eng/install-benchmark-prerequisites.sh' to run this test.");
        string root = RepositoryRoot();
        string server = BenchmarkServer();
        var start = new ProcessStartInfo(Python)
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
                 {
                     Path.Combine(root, "benchmarks", "lockstep.py"), "--configs", "bench", "--quick", "--pairs", "1",
                     "--train-warmup", "1", "--bench-batch", "8", "--sample-batch", "2", "--out", _out, "--csharp", $"dotnet '{server}'",
                 })
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["OPENBLAS_NUM_THREADS"] = "1";
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(180_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"lockstep.py did not finish in 3 minutes: {stderr.Result}");
        }
        Assert.True(process.ExitCode == 0, $"lockstep.py failed ({process.ExitCode}): {stderr.Result}\n{stdout}");

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_out, "lockstep.json")));
        var config = Assert.Single(doc.RootElement.GetProperty("configs").EnumerateArray());
        Assert.Equal("bench", config.GetProperty("config").GetString());
        Assert.True(config.GetProperty("parameters").GetInt64() > 1_000_000);
        var ready = config.GetProperty("ready");
        foreach (var side in new[] { "ours", "reference" })
        {
            string[] words = ready.GetProperty(side).GetString()!.Split(' ');
            Assert.True(words.Length == 4 && words[0] == "ready", $"{side} answered '{string.Join(' ', words)}' to setup");
        }
        var rows = config.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(["train step", "inference forward", "DDPM 1000", "DDIM 50", "DPM-Solver++ 20"],
            rows.Select(r => r.GetProperty("measure").GetString()));
        foreach (var row in rows)
        {
            var pair = Assert.Single(row.GetProperty("pairs").EnumerateArray());
            foreach (var side in new[] { "ours", "pytorch" })
            {
                double seconds = pair.GetProperty(side).GetDouble();
                Assert.True(double.IsFinite(seconds) && seconds > 0, $"{row.GetProperty("measure")}: {side} answered {seconds} s");
            }
        }
        Assert.Contains("| bench | train step (s) |", stdout);
    }

    private static bool Succeeds(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        try
        {
            using var process = System.Diagnostics.Process.Start(start)!;
            _ = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            return process.WaitForExit(60_000) && process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MLDiffusion.sln"))) dir = dir.Parent;
        Assert.True(dir is not null, "the repository root (MLDiffusion.sln) is not above " + AppContext.BaseDirectory);
        return dir!.FullName;
    }

    // tests/Microsoft.ML.Diffusion.Tests/bin/<config>/<tfm>/ → benchmarks/Microsoft.ML.Diffusion.Benchmarks/bin/<config>/<tfm>/,
    // built with the tests (the test project references it without using its assembly).
    private static string BenchmarkServer()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = testDir.Name, config = testDir.Parent!.Name;
        string dll = Path.Combine(RepositoryRoot(), "benchmarks", "Microsoft.ML.Diffusion.Benchmarks", "bin", config, tfm,
            "Microsoft.ML.Diffusion.Benchmarks.dll");
        Assert.True(File.Exists(dll), $"the benchmark was not built at {dll}");
        return dll;
    }

    public void Dispose() => Directory.Delete(_out, recursive: true);
}
