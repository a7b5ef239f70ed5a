using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Microsoft.ML.Diffusion.Testing;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>
/// kill -9 in the middle of a save: the probe (tests/Microsoft.ML.Diffusion.ZipProbe, save-loop mode) saves a model zip,
/// a checkpoint and a training state over and over, each round with different weights; the test kills it while one of
/// the files is being written (its temporary file exists, or — were it written in place — it is shorter than a whole
/// save) and a random 0–4 ms later, once for each kind. Every file must then load as one whole round's save.
/// </summary>
public sealed class KillDuringSaveTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-kill-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public async Task AProcessKilledMidSaveLeavesEveryFileWholeAndLoadable()
    {
        // One probe per kind of file, side by side, each killed while writing its kind.
        var runs = SaveLoop.Files.ToDictionary(target => target, target =>
        {
            string folder = Directory.CreateDirectory(Path.Combine(_folder, target.Replace('.', '-'))).FullName;
            return (Folder: folder, Kill: Task.Run(() => KillWhileWriting(folder, target)));
        });
        await Task.WhenAll(runs.Values.Select(r => r.Kill));
        using var initial = SaveLoop.CreateTrainer();
        var wrong = new List<string>();
        foreach (var (target, (folder, kill)) in runs)
        {
            var (saved, how) = await kill;
            foreach (string file in SaveLoop.Files)
            {
                // A whole save: the last round the probe reported, or the next one if the kill came between its rename and its report.
                string holds = Holds(Path.Combine(folder, file), initial.Network, out int? round);
                string line = $"killed while writing {target} ({how}): {file} {holds}; the probe had reported round {saved.GetValueOrDefault(file)}";
                output.WriteLine(line);
                if (round is not { } r || r < saved.GetValueOrDefault(file) || r > saved.GetValueOrDefault(file) + 1) wrong.Add(line);
            }
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));

        // A killed save leaves its temporary file (unless the kill came just after the rename); the next save to the path removes it.
        string stateFolder = runs[SaveLoop.State].Folder;
        output.WriteLine($"left by the kill: {string.Join(", ", SaveTestModels.Others(stateFolder, SaveLoop.Files))}");
        initial.SaveState(Path.Combine(stateFolder, SaveLoop.State));
        Assert.Empty(SaveTestModels.Others(stateFolder, SaveLoop.Files));
    }

    // Runs the probe until it is writing `target`, then kills it; returns the last round it reported per file.
    private static (IReadOnlyDictionary<string, int> Saved, string How) KillWhileWriting(string folder, string target)
    {
        var saved = new ConcurrentDictionary<string, int>();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { ZipProbe.Program, "save-loop", folder }) start.ArgumentList.Add(arg);
        using var probe = System.Diagnostics.Process.Start(start)!;
        try
        {
            probe.OutputDataReceived += (_, e) =>
            {
                if (e.Data?.Split(' ') is [var file, var round]) saved[file] = int.Parse(round);
            };
            probe.BeginOutputReadLine();
            var stderr = probe.StandardError.ReadToEndAsync();

            // Every file holds a whole save before the kill.
            var clock = Stopwatch.StartNew();
            while (!saved.ContainsKey(SaveLoop.State))
            {
                if (probe.HasExited) Assert.Fail($"the probe stopped: {stderr.Result}");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the probe saved nothing within a minute");
                Thread.Sleep(5);
            }

            string path = Path.Combine(folder, target), temp = $".{target}.{probe.Id}.";
            long whole = new FileInfo(path).Length;
            for (clock.Restart(); clock.Elapsed < TimeSpan.FromSeconds(20);)
            {
                string? how = Directory.EnumerateFiles(folder).Any(f => Path.GetFileName(f).StartsWith(temp, StringComparison.Ordinal)) ? "its temporary file existed"
                    : new FileInfo(path) is { Exists: true, Length: var length } && length < whole * 9 / 10 ? $"it held {length} of {whole} bytes"
                    : null;
                if (how is not null)
                {
                    int delay = Random.Shared.Next(0, 5);   // somewhere in the write, not always at its start
                    if (delay > 0) Thread.Sleep(delay);
                    how += $", killed {delay} ms later";
                    probe.Kill();
                    probe.WaitForExit();
                    return (saved, how);
                }
                whole = Math.Max(whole, new FileInfo(path) is { Exists: true } f ? f.Length : 0);
                Thread.Yield();   // the probes run beside the pollers on few cores
            }
            throw new Xunit.Sdk.XunitException($"never saw {target} being written");
        }
        finally
        {
            if (!probe.HasExited) { probe.Kill(); probe.WaitForExit(); }
        }
    }

    // What the file holds, loaded as a user would load it: the round whose weights it has (null: none), or why it does not load.
    private static string Holds(string path, NoisePredictor initial, out int? round)
    {
        try
        {
            round = Round(path, initial);
            return round is { } r ? $"holds round {r}" : "holds weights of no single round";
        }
        catch (Exception e)
        {
            round = null;
            return $"does not load: {e.GetType().Name}: {e.Message}";
        }
    }

    private static int? Round(string path, NoisePredictor initial)
    {
        switch (Path.GetFileName(path))
        {
            case SaveLoop.Zip:
                using (var model = SaveTestModels.LoadZip(new MLContext(seed: 0), path))
                    return SaveLoop.Round(model.Network, initial);
            case SaveLoop.Checkpoint:
                using (var model = DiffusionModel.Load(path, CPU))
                    return SaveLoop.Round(model.Network, initial);
            default:
                using (var trainer = SaveLoop.CreateTrainer())
                {
                    trainer.LoadState(path);
                    return SaveLoop.Round(trainer.Network, initial);
                }
        }
    }
}
