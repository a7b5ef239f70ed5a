using System.Diagnostics;
using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// <c>--lora-cost-all</c>: the four configurations of <see cref="LoraCost"/> (lora-256, full-256, lora-512, full-512),
/// each in a child process of this benchmark so that each peak RSS is its own. The parent reads the child's VmRSS every
/// 100 ms and kills it past the memory limit: a full fine-tune at 512×512 may not fit (860 M parameters are 3.4 GB as
/// weights, as many again as gradients and twice that as AdamW's moments, before any activation), and a machine that
/// starts to swap measures nothing. Such a configuration is recorded as stopped, with the RSS it had reached.
/// </summary>
internal static class LoraCostDriver
{
    public static int Run(BenchmarkOptions o, Action<string> log)
    {
        double limitMiB = o.MemoryLimitGib * 1024;
        int failed = 0;
        foreach (var (mode, size) in LoraCost.All)
        {
            string name = LoraCost.Name(mode, size);
            var args = new List<string>
            {
                "--lora-cost", "--lora-cost-mode", mode, "--lora-cost-size", Text(size), "--lora-rank", Text(o.LoraRank),
                "--sd-size", o.SdSize, "--repeats", Text(o.Repeats), "--train-warmup", Text(o.LoraCostWarmup), "--out", o.OutputDirectory,
            };
            if (o.Threads is int threads) args.AddRange(["--threads", Text(threads)]);
            var start = Self();
            foreach (var a in args) start.ArgumentList.Add(a);
            start.UseShellExecute = false;
            start.RedirectStandardOutput = true;   // the result line; the child's log goes to stderr as ours
            log($"[lora-cost-all] {name}: {start.FileName} {string.Join(' ', start.ArgumentList)} (killed above {o.MemoryLimitGib:0.#} GiB)");

            using var child = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}.");
            child.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line) Console.WriteLine(line);
            };
            child.BeginOutputReadLine();
            double highest = 0;
            bool over = false;
            while (!child.WaitForExit(100))
            {
                double rss = ProcessMemory.ResidentMiB(child.Id);
                if (double.IsNaN(rss)) continue;
                highest = Math.Max(highest, rss);
                if (rss > limitMiB)
                {
                    over = true;
                    child.Kill(entireProcessTree: true);
                    break;
                }
            }
            child.WaitForExit();   // and the rest of its output
            string? status = over ? $"stopped at {highest / 1024:F1} GiB (over the limit)"
                : child.ExitCode != 0 ? $"failed (exit code {child.ExitCode})"
                : null;
            if (status is null) continue;
            log($"[lora-cost-all] {name}: {status}");
            if (!over) failed++;
            LoraCost.Append(o.OutputDirectory, LoraCost.Stopped(mode, size, o.SdSize, o.LoraRank, status, highest,
                o.Threads ?? TorchSharp.torch.get_num_threads(), o.LoraCostWarmup));
        }
        Console.Write(LoraCost.WriteMarkdown(o.OutputDirectory));
        log($"wrote {Path.Combine(o.OutputDirectory, LoraCost.JsonFile)} and {Path.Combine(o.OutputDirectory, LoraCost.MarkdownFile)}");
        return failed == 0 ? 0 : 1;
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    // This benchmark again: its apphost, or `dotnet <this assembly>` when it was started that way.
    private static ProcessStartInfo Self()
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is not known.");
        var start = new ProcessStartInfo(host);
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
            start.ArgumentList.Add(Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("The benchmark's assembly is not known."));
        return start;
    }
}
