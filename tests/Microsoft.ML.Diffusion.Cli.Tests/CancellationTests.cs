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
