using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Testing;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;
using AtomicFile = Microsoft.ML.Diffusion.Storage.AtomicFile;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>
/// A save that fails partway — the disk fills up (an injected "No space left on device" after some bytes), the writer
/// throws, the save is cancelled — leaves the previous file byte for byte and loadable, and no temporary file.
/// </summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-atomic-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string In(string name) => Path.Combine(_folder, name);

    // What a failed save must report: the file, the system's error, and that the previous file stands.
    private static void NamesTheFile(IOException e, string path, bool existed)
    {
        Assert.Contains($"'{path}'", e.Message);
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains(existed ? "The previous file is unchanged." : "No file was created.", e.Message);
        Assert.IsType<IOException>(e.InnerException);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(0.99)]
    public void AFullDiskMidwayLeavesThePreviousCheckpoint(double fractionWritten)
    {
        string path = In("model.mldiff");
        using var saved = SaveTestModels.Model(8, seed: 1);
        saved.Save(path);
        byte[] before = File.ReadAllBytes(path);

        using var next = SaveTestModels.Model(8, seed: 2);
        using (var disk = InjectedSaveFailure.FullDisk(path, (long)(before.Length * fractionWritten)))
        {
            NamesTheFile(Assert.Throws<IOException>(() => next.Save(path)), path, existed: true);
            Assert.Equal(1, disk.Failed);
        }

        Assert.Equal(before, File.ReadAllBytes(path));
        using var loaded = DiffusionModel.Load(path, CPU);
        SaveTestModels.SameWeights(saved.Network, loaded.Network);
        Assert.Empty(SaveTestModels.Others(_folder, "model.mldiff"));
    }

    [Fact]
    public void AFullDiskMidwayLeavesThePreviousModelZip()
    {
        string path = In("model.zip");
        var ml = new MLContext(seed: 0);
        using var saved = SaveTestModels.Model(8, seed: 1);
        var (stage, schema) = SaveTestModels.Stage(ml, saved);
        ml.Model.SaveAtomically(stage, schema, path);
        byte[] before = File.ReadAllBytes(path);

        using var next = SaveTestModels.Model(8, seed: 2);
        var (nextStage, _) = SaveTestModels.Stage(ml, next);
        using (InjectedSaveFailure.FullDisk(path, before.Length / 2))
            NamesTheFile(Assert.Throws<IOException>(() => ml.Model.SaveAtomically(nextStage, schema, path)), path, existed: true);

        Assert.Equal(before, File.ReadAllBytes(path));
        using var loaded = SaveTestModels.LoadZip(new MLContext(seed: 0), path);
        SaveTestModels.SameWeights(saved.Network, loaded.Network);
        Assert.Empty(SaveTestModels.Others(_folder, "model.zip"));
    }

    private static DiffusionTrainer Trainer() => new(Training.DiffusionTrainerTests.TinyNetwork, options: new DiffusionTrainerOptions { BatchSize = 4, Seed = 3 }, device: CPU);

    [Fact]
    public void AFullDiskMidwayLeavesThePreviousTrainingState()
    {
        string path = In("state.zip");
        using var trainer = Trainer();
        trainer.SaveState(path);
        byte[] before = File.ReadAllBytes(path);
        using (NewDisposeScope()) trainer.TrainStep(rand(4, 1, 16, 16) * 2 - 1);

        using (InjectedSaveFailure.FullDisk(path, before.Length / 2))
            NamesTheFile(Assert.Throws<IOException>(() => trainer.SaveState(path)), path, existed: true);

        Assert.Equal(before, File.ReadAllBytes(path));
        using var resumed = Trainer();
        using var fresh = Trainer();
        resumed.LoadState(path);
        Assert.Equal(0, resumed.StepsDone);
        SaveTestModels.SameWeights(fresh.Network, resumed.Network);
        Assert.Empty(SaveTestModels.Others(_folder, "state.zip"));
    }

    [Fact]
    public void AFailedFirstSaveCreatesNoFile()
    {
        string path = Path.Combine(_folder, "sub", "model.mldiff");
        using var model = SaveTestModels.Model(8, seed: 1);
        using (InjectedSaveFailure.FullDisk(path, 1000))
            NamesTheFile(Assert.Throws<IOException>(() => model.Save(path)), path, existed: false);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    public static TheoryData<Exception> WriterFailures => new() { new InvalidOperationException("the writer failed"), new OperationCanceledException() };

    [Theory]
    [MemberData(nameof(WriterFailures))]
    public void AWriterThatThrowsOrIsCancelledLeavesTheTarget(Exception failure)
    {
        string path = In("data.bin");
        File.WriteAllBytes(path, [1, 2, 3]);
        var thrown = Assert.ThrowsAny<Exception>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[100_000]);
            throw failure;
        }));
        Assert.Same(failure, thrown);   // not wrapped: the writer's own exception
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Empty(SaveTestModels.Others(_folder, "data.bin"));
    }

    [SkippableFact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void ASaveKeepsTheFilesPermissionsAndASymbolicLink()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix permissions and links");
        string path = In("private.bin"), link = In("link.bin");
        File.WriteAllBytes(path, [1]);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.CreateSymbolicLink(link, path);

        AtomicFile.Write(link, stream => stream.Write([2, 3]));

        Assert.Equal(path, new FileInfo(link).LinkTarget);
        Assert.Equal([2, 3], File.ReadAllBytes(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void TheNextSaveRemovesTemporaryFilesOfKilledSaves()
    {
        string path = In("model.bin");
        int dead = DeadProcessId();
        string abandoned = In($".model.bin.{dead}.{Guid.NewGuid():N}.tmp");
        string running = In($".model.bin.1.{Guid.NewGuid():N}.tmp");                              // pid 1 runs: its save may be under way
        string ours = In($".model.bin.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");           // another save in this process
        string other = In($".other.bin.{dead}.{Guid.NewGuid():N}.tmp");                           // another file's
        foreach (string file in new[] { abandoned, running, ours, other }) File.WriteAllBytes(file, [0]);

        AtomicFile.Write(path, stream => stream.Write([1]));

        Assert.False(File.Exists(abandoned));
        Assert.True(File.Exists(running) && File.Exists(ours) && File.Exists(other));
    }

    // The id of a process that has exited.
    private static int DeadProcessId()
    {
        using var process = System.Diagnostics.Process.Start("true")!;
        process.WaitForExit();
        return process.Id;
    }
}
