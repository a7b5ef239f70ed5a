using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-ckpt-").FullName;

    private static DiffusionModel TrainedModel()
    {
        using var trainer = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, options: DiffusionTrainerTests.FastOptions(11), device: CPU);
        using var data = SyntheticShapes.Generate(32, 16);
        trainer.Train(data, 10);
        return trainer.ToModel();
    }

    [Fact]
    public void LoadedCheckpointReproducesSamplesBitForBit()
    {
        using var model = TrainedModel();
        string path = Path.Combine(_dir, "model.mldiff");
        model.Save(path);
        using var loaded = DiffusionModel.Load(path, CPU);

        Assert.Equal(((UNet2DModelOptions)model.NetworkOptions).BlockOutChannels, ((UNet2DModelOptions)loaded.NetworkOptions).BlockOutChannels);
        Assert.Equal(model.ScheduleOptions, loaded.ScheduleOptions);
        Assert.Equal(10, loaded.TrainingSteps);
        foreach (var kind in new[] { SamplerName.Ddpm, SamplerName.Ddim, SamplerName.DpmSolverPlusPlus })
        {
            var options = new GenerationOptions { Sampler = kind, Steps = 10 };
            using var a = model.Generate(options, [1L, 2L, 3L]);
            using var b = loaded.Generate(options, [1L, 2L, 3L]);
            Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray());
        }
    }

    [Fact]
    public void CorruptTruncatedForeignAndNewerFilesAreRejectedClearly()
    {
        using var model = TrainedModel();
        using var ms = new MemoryStream();
        model.Save(ms);
        byte[] good = ms.ToArray();

        var truncated = good[..(good.Length / 2)];
        Assert.Contains("truncated", Load(truncated).Message);

        var flipped = (byte[])good.Clone();
        flipped[^100] ^= 0xFF;
        Assert.Contains("SHA-256", Load(flipped).Message);

        Assert.Contains("not a Microsoft.ML.Diffusion checkpoint", Load("PK\u0003\u0004 a zip file"u8.ToArray()).Message);
        Assert.Contains("empty", Load(Array.Empty<byte>()).Message);

        var newer = (byte[])good.Clone();
        BitConverter.GetBytes(DiffusionCheckpoint.FormatVersion + 1).CopyTo(newer, 8);
        Assert.Contains("newer", Load(newer).Message);
    }

    [Fact]
    public void WeightsThatDoNotFitTheHeaderAreRejected()
    {
        using var model = TrainedModel();
        using var ms = new MemoryStream();
        model.Save(ms);
        ms.Position = 0;
        var (header, weights) = DiffusionCheckpoint.Read(ms);
        using var lying = new MemoryStream();
        DiffusionCheckpoint.Write(lying, header with { Network = (UNet2DModelOptions)header.Network with { BlockOutChannels = [32, 64] } }, weights);
        lying.Position = 0;
        var e = Assert.Throws<CheckpointFormatException>(() => DiffusionModel.Load(lying, CPU));
        Assert.Contains("do not fit", e.Message);
    }

    [Fact]
    public void SavingOverAnExistingFileIsAtomic()
    {
        using var model = TrainedModel();
        string path = Path.Combine(_dir, "atomic.mldiff");
        model.Save(path);
        byte[] before = File.ReadAllBytes(path);

        // A write that fails part-way (here: the header cannot be serialised) leaves the old file intact and no temp files.
        Assert.ThrowsAny<Exception>(() => DiffusionCheckpoint.WriteFile(path, model.Header, null!));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir));

        model.Save(path);
        using var reloaded = DiffusionModel.Load(path, CPU);
        Assert.Equal(10, reloaded.TrainingSteps);
    }

    private static CheckpointFormatException Load(byte[] bytes)
        => Assert.Throws<CheckpointFormatException>(() => DiffusionModel.Load(new MemoryStream(bytes), CPU, "test.mldiff"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
