using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Testing;
using Microsoft.ML.Diffusion.Training;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>TrainDiffusion's periodic training state goes through the atomic write: a failed save keeps the previous state, which resumes.</summary>
public sealed class TrainingCheckpointSaveTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-ckpt-save-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private sealed class PixelRow
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = new float[64];
    }

    private DiffusionTrainingOptions Options(List<int> steps) => new()
    {
        ImageColumnName = nameof(PixelRow.Pixels), ImageChannels = 1, PixelRange = PixelRange.Unit,
        BaseChannels = 8, ChannelMultipliers = [1, 2], AttentionResolutions = [4],
        TrainingSteps = 6, BatchSize = 4, WarmupSteps = 1, EmaDecay = 0.9, Seed = 3, Device = "cpu", ReportEvery = 1,
        CheckpointPath = Path.Combine(_folder, "state.zip"), CheckpointEvery = 2,
        Progress = p => steps.Add(p.Step),
    };

    [Fact]
    public void AFailedPeriodicCheckpointKeepsThePreviousOneAndTrainingResumesFromIt()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new PixelRow { Pixels = [.. Enumerable.Range(0, 64).Select(p => (i * 7 + p) % 5 / 4f)] }).ToList());
        var steps = new List<int>();
        var options = Options(steps);
        string state = options.CheckpointPath!;

        // The step-2 checkpoint is written; the disk is full for the step-4 one.
        using (var disk = InjectedSaveFailure.FullDisk(state, capacity: 10_000, succeeding: 1))
        {
            var e = Assert.Throws<IOException>(() => ml.Transforms.TrainDiffusion(options).Fit(data));
            Assert.Contains($"Could not write '{state}'", e.Message);
            Assert.Contains("The previous file is unchanged.", e.Message);
            Assert.Equal(1, disk.Failed);
        }
        Assert.Equal([1, 2, 3, 4], steps);
        Assert.Empty(SaveTestModels.Others(_folder, "state.zip"));

        var resumed = new List<int>();
        using var model = (DiffusionTrainingTransformer)ml.Transforms.TrainDiffusion(Options(resumed)).Fit(data);
        Assert.Equal([3, 4, 5, 6], resumed);   // from the step-2 state
        Assert.Equal(6, model.Model.TrainingSteps);
    }
}
