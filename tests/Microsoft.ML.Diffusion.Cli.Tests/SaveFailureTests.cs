using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Testing;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>
/// train and import save atomically: a save that fails (a disk full after some bytes, injected) reports the file and
/// keeps the previous one, which the next run resumes from or loads.
/// </summary>
public sealed class SaveFailureTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-save-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string[] Leftovers(params string[] expected)
        => [.. Directory.GetFiles(_folder).Select(Path.GetFileName).Where(f => !expected.Contains(f))!];

    [Fact]
    public void TrainKeepsThePreviousCheckpointWhenOneCannotBeWrittenAndResumesFromIt()
    {
        string zip = Path.Combine(_folder, "model.zip"), state = Path.Combine(_folder, "model.state.zip");
        string[] args = ["train", "--shapes", .. TinyTraining(6), "--checkpoint-every", "2", "--out", zip];

        Outcome failed;
        using (var disk = InjectedSaveFailure.FullDisk(state, capacity: 10_000, succeeding: 1))   // step 2's is written, step 4's is not
        {
            failed = Run(args);
            Assert.Equal(1, disk.Failed);
        }
        Assert.True(failed.ExitCode == ExitCodes.RuntimeError, failed.ToString());
        Assert.Contains($"error: Could not write '{state}': No space left on device. The previous file is unchanged.", failed.Output);
        Assert.False(File.Exists(zip));
        Assert.Empty(Leftovers("model.state.zip", "model.loss.csv"));

        var resumed = Run(args);
        Succeeded(resumed);
        Assert.Contains("resumed at step 2", resumed.Output);
        Assert.Equal(6, DiffusionTrainingTransformer.FindModel(new MLContext().Model.Load(zip, out _)).TrainingSteps);
    }

    [Fact]
    public void ImportKeepsThePreviousZipWhenTheNewOneCannotBeWritten()
    {
        string pipeline = Path.Combine(_folder, "pipeline"), zip = Path.Combine(_folder, "imported.zip");
        foreach (var (from, to) in new[] { ("unet-attn", "unet"), ("ddim-leading", "scheduler") })
        {
            Directory.CreateDirectory(Path.Combine(pipeline, to));
            foreach (string file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", from)).Where(f => f.EndsWith(".json") || f.EndsWith("model.safetensors")))
                File.Copy(file, Path.Combine(pipeline, to, Path.GetFileName(file)));
        }
        Succeeded(Run("import", "--diffusers", pipeline, "--out", zip));
        byte[] before = File.ReadAllBytes(zip);

        Outcome failed;
        using (InjectedSaveFailure.FullDisk(zip, capacity: before.Length / 2))
            failed = Run("import", "--diffusers", pipeline, "--out", zip);
        Assert.True(failed.ExitCode == ExitCodes.RuntimeError, failed.ToString());
        Assert.Contains($"error: Could not write '{zip}': No space left on device. The previous file is unchanged.", failed.Output);
        Assert.Equal(before, File.ReadAllBytes(zip));
        Assert.Empty(Leftovers("imported.zip"));
        Succeeded(Run("info", "--model", zip));
    }
}
