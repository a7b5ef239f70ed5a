using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Benchmarks;

/// <summary>
/// Keeps the benchmark's --lora-cost mode running at --sd-size tiny: a LoRA step through the library's trainer reports its
/// time, memory, trainable parameters and adapter file; and --lora-cost-all stops a child that passes the memory limit
/// and records it as stopped rather than timed.
/// </summary>
public sealed class LoraCostBenchmarkTests : IDisposable
{
    private readonly string _out = Path.Combine(Path.GetTempPath(), "lora-cost-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_out)) Directory.Delete(_out, recursive: true);
    }

    [Fact]
    public async Task TinyLoraStepReportsTimeMemoryAndAdapterFile()
    {
        var (code, stdout, stderr) = await Run("--lora-cost", "--lora-cost-mode", "lora", "--lora-cost-size", "256", "--sd-size", "tiny",
            "--repeats", "1", "--train-warmup", "1", "--threads", "1", "--out", _out);
        Assert.True(code == 0, $"the benchmark failed ({code}): {stderr}\n{stdout}");
        string line = Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), l => l.StartsWith('{'));
        using var doc = JsonDocument.Parse(line);
        var r = doc.RootElement;
        Assert.Equal("lora-256", r.GetProperty("configuration").GetString());
        Assert.Equal("ok", r.GetProperty("status").GetString());
        Assert.Equal(792_964, r.GetProperty("parameters").GetInt64());   // the tiny UNet of --sd-components
        // 32 rank-4 adapters of the tiny UNet's attention projections: far fewer parameters than the UNet.
        Assert.Equal(32, r.GetProperty("adapted_layers").GetInt32());
        Assert.Equal(9_984, r.GetProperty("trainable_parameters").GetInt64());
        Assert.Single(r.GetProperty("seconds").EnumerateArray());
        foreach (var field in new[] { "median_seconds", "rss_before_training_mb", "peak_rss_mb" })
            Assert.True(r.GetProperty(field).GetDouble() > 0, $"{field} is {r.GetProperty(field)}");
        Assert.True(r.GetProperty("peak_rss_mb").GetDouble() >= r.GetProperty("rss_before_training_mb").GetDouble());
        string file = r.GetProperty("adapter_file").GetString()!;
        Assert.Equal(new FileInfo(file).Length, r.GetProperty("adapter_file_bytes").GetInt64());
        Assert.Contains("| tiny UNet | LoRA rank 4 | 256² | 9,984 |", File.ReadAllText(Path.Combine(_out, "lora-cost.md")));
    }

    [Fact]
    public async Task ChildrenOverTheMemoryLimitAreStoppedAndRecorded()
    {
        // 0.1 GiB is less than the runtime and libtorch take: every child passes it while starting.
        var (code, stdout, stderr) = await Run("--lora-cost-all", "--sd-size", "tiny", "--memory-limit-gib", "0.1", "--threads", "1", "--out", _out);
        Assert.True(code == 0, $"the driver failed ({code}): {stderr}\n{stdout}");
        var records = File.ReadAllLines(Path.Combine(_out, "lora-cost.json")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(["lora-256", "full-256", "lora-512", "full-512"], records.Select(r => r.GetProperty("configuration").GetString()));
        Assert.All(records, r => Assert.Matches(@"^stopped at \d+\.\d GiB \(over the limit\)$", r.GetProperty("status").GetString()));
        Assert.All(records, r => Assert.False(r.TryGetProperty("median_seconds", out _)));
        Assert.Equal(4, stdout.Split('\n').Count(l => l.Contains("(over the limit) |")));   // the table
    }

    private static async Task<(int Code, string Stdout, string Stderr)> Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(SdComponentsBenchmarkTests.BenchmarkDll());
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        var stdoutTask = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"the benchmark did not finish in two minutes: {await stderrTask}");
        }
        return (process.ExitCode, await stdoutTask, await stderrTask);
    }
}
