using System.Globalization;
using Microsoft.ML.Diffusion.MLNet;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>Ctrl+C (the cancellation token the tool's Ctrl+C handler cancels) stops training cleanly and keeps a checkpoint to resume from.</summary>
public sealed class CancellationTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-cancel-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>Captures output and cancels when a given text is written (as a user pressing Ctrl+C on seeing it).</summary>
    private sealed class CancelOnText(string trigger, CancellationTokenSource source) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(trigger, StringComparison.Ordinal)) source.Cancel();
        }
    }

    /// <summary>Captures output and throws once when a given text is written, as a process killed at that point stops.</summary>
    private sealed class CrashOnText(string trigger) : StringWriter
    {
        private bool _crashed;

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (!_crashed && value is not null && value.Contains(trigger, StringComparison.Ordinal))
            {
                _crashed = true;
                throw new IOException("simulated crash");
            }
        }
    }

    // The steps of a loss CSV, in file order.
    private static int[] LoggedSteps(string csv)
    {
        var lines = File.ReadAllLines(csv);
        Assert.Equal("step,loss,learning_rate", lines[0]);
        return [.. lines.Skip(1).Select(l => int.Parse(l.Split(',')[0], CultureInfo.InvariantCulture))];
    }

    [Fact]
    public void AResumedRunKeepsTheEarlierStepsInItsLossLog()
    {
        string zip = Path.Combine(_folder, "model.zip"), csv = Path.Combine(_folder, "model.loss.csv");
        string[] args = ["train", "--shapes", .. TinyTraining(12), "--checkpoint-every", "100", "--out", zip];

        using var cts = new CancellationTokenSource();
        var stopped = CliRunner.Run(cts.Token, new CancelOnText("step 4/12", cts), args);
        Assert.True(stopped.ExitCode == 130, stopped.ToString());
        var before = File.ReadAllLines(csv);

        Succeeded(Run(args));
        Assert.Equal(Enumerable.Range(1, 12), LoggedSteps(csv));
        Assert.Equal(before, File.ReadAllLines(csv).Take(before.Length));   // the first run's rows, unchanged
    }

    [Fact]
    public void ARunThatCrashedResumesWithTheLossLogUpToItsLastCheckpoint()
    {
        string zip = Path.Combine(_folder, "model.zip"), csv = Path.Combine(_folder, "model.loss.csv");
        string[] args = ["train", "--shapes", .. TinyTraining(12), "--checkpoint-every", "4", "--out", zip];

        var crashed = CliRunner.Run(CancellationToken.None, new CrashOnText("step 6/12"), args);
        Assert.True(crashed.ExitCode == 1, crashed.ToString());
        Assert.Equal(Enumerable.Range(1, 4), LoggedSteps(csv));   // written with each checkpoint, not only at the end

        var resumed = Run(args);
        Succeeded(resumed);
        Assert.Contains("resumed at step 4", resumed.Output);
        Assert.Equal(Enumerable.Range(1, 12), LoggedSteps(csv));
    }

    [Fact]
    public void CtrlCStopsWithExitCode130KeepsTheCheckpointAndTheSameCommandResumes()
    {
        string zip = Path.Combine(_folder, "model.zip"), checkpoint = Path.Combine(_folder, "model.state.zip");
        string[] args = ["train", "--shapes", .. TinyTraining(12), "--checkpoint-every", "100", "--out", zip];

        using var cts = new CancellationTokenSource();
        var stopped = CliRunner.Run(cts.Token, new CancelOnText("step 4/12", cts), args);
        Assert.True(stopped.ExitCode == 130, stopped.ToString());
        Assert.Contains("Training stopped after step 4", stopped.Output);
        Assert.Contains(checkpoint, stopped.Output);
        Assert.True(File.Exists(checkpoint), "the checkpoint is written on cancellation, not only every --checkpoint-every steps");
        Assert.False(File.Exists(zip));

        var resumed = Run(args);
        Succeeded(resumed);
        Assert.Contains("Resuming from checkpoint", resumed.Output);
        Assert.Contains("resumed at step 4", resumed.Output);
        Assert.DoesNotContain("step 4/12", resumed.Output);
        Assert.Equal(12, DiffusionTrainingTransformer.FindModel(new MLContext().Model.Load(zip, out _)).TrainingSteps);
    }
}
