using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>
/// Saves on a real, size-limited file system (a tmpfs; skipped where mounting is not permitted): a file that fits is
/// written, a bigger one (or a second copy, which must fit beside the first until it replaces it) is not, and the
/// system's ENOSPC surfaces as an IOException naming the file while the first file stays whole and loads.
/// </summary>
public sealed class FullDiskTests
{
    private static void NamesTheFile(IOException e, string path)
    {
        Assert.Contains($"Could not write '{path}'", e.Message);
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains("The previous file is unchanged.", e.Message);
    }

    [SkippableFact]
    public void ABiggerModelZipThatDoesNotFitLeavesTheSmallerOne()
    {
        using var disk = SmallFileSystem.Mount(1 << 20);
        string path = Path.Combine(disk.Folder, "model.zip");
        var ml = new MLContext(seed: 0);
        using var small = SaveTestModels.Model(8, seed: 1);     // ~0.2 MB zipped
        using var big = SaveTestModels.Model(48, seed: 2);      // ~4 MB
        var (smallStage, schema) = SaveTestModels.Stage(ml, small);
        var (bigStage, _) = SaveTestModels.Stage(ml, big);

        ml.Model.SaveAtomically(smallStage, schema, path);
        byte[] before = File.ReadAllBytes(path);
        NamesTheFile(Assert.Throws<IOException>(() => ml.Model.SaveAtomically(bigStage, schema, path)), path);

        Assert.Equal(before, File.ReadAllBytes(path));
        using var loaded = SaveTestModels.LoadZip(new MLContext(seed: 0), path);
        SaveTestModels.SameWeights(small.Network, loaded.Network);
        Assert.Empty(SaveTestModels.Others(disk.Folder, "model.zip"));
    }

    [SkippableFact]
    public void ABiggerCheckpointThatDoesNotFitLeavesTheSmallerOne()
    {
        using var disk = SmallFileSystem.Mount(1 << 20);
        string path = Path.Combine(disk.Folder, "model.mldiff");
        using var small = SaveTestModels.Model(8, seed: 1);
        using var big = SaveTestModels.Model(48, seed: 2);

        small.Save(path);
        byte[] before = File.ReadAllBytes(path);
        NamesTheFile(Assert.Throws<IOException>(() => big.Save(path)), path);

        Assert.Equal(before, File.ReadAllBytes(path));
        using var loaded = DiffusionModel.Load(path, CPU);
        SaveTestModels.SameWeights(small.Network, loaded.Network);
        Assert.Empty(SaveTestModels.Others(disk.Folder, "model.mldiff"));
    }

    [SkippableFact]
    public void ATrainingStateWithNoRoomForASecondCopyKeepsTheFirst()
    {
        static DiffusionTrainer Trainer() => new(Training.DiffusionTrainerTests.TinyNetwork, options: new DiffusionTrainerOptions { BatchSize = 4, Seed = 3 }, device: CPU);
        using var trainer = Trainer();
        using (NewDisposeScope()) trainer.TrainStep(rand(4, 1, 16, 16) * 2 - 1);

        // Room for one state and a half: the second save's temporary file cannot sit beside the first.
        string measured = Path.Combine(Path.GetTempPath(), $"mldiffusion-state-{Guid.NewGuid():N}.zip");
        trainer.SaveState(measured);
        long size = new FileInfo(measured).Length;
        File.Delete(measured);
        using var disk = SmallFileSystem.Mount(size * 3 / 2);
        string path = Path.Combine(disk.Folder, "state.zip");

        trainer.SaveState(path);
        byte[] before = File.ReadAllBytes(path);
        using (NewDisposeScope()) trainer.TrainStep(rand(4, 1, 16, 16) * 2 - 1);
        NamesTheFile(Assert.Throws<IOException>(() => trainer.SaveState(path)), path);

        Assert.Equal(before, File.ReadAllBytes(path));
        using var resumed = Trainer();
        resumed.LoadState(path);
        Assert.Equal(1, resumed.StepsDone);
        Assert.Empty(SaveTestModels.Others(disk.Folder, "state.zip"));
    }
}
