using System.IO.Compression;
using Microsoft.ML.Diffusion.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Checkpoints;

/// <summary>
/// TorchCheckpointFile and its RestrictedUnpickler on files torch.save wrote (TestData/StableDiffusion/single-file,
/// make_checkpoint_fixtures.py): tensors of every dtype and views of one storage read as PyTorch holds them; a
/// checkpoint that asks to call anything but the allowed globals is refused, naming the global.
/// </summary>
public sealed class TorchCheckpointFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-torchckpt-").FullName;

    private static string Fixture(string name) => SafeTensorsFileTests.Fixture(name);

    private static readonly string[] StateDictNames = ["f32", "f16", "bf16", "f64", "i64", "i32", "u8", "bool", "conv1x1", "scalar", "base", "transposed", "row2", "empty"];

    [Theory]
    [InlineData("state-dict.ckpt")]
    [InlineData("lightning.ckpt")]
    public void EveryTensorReadsAsPyTorchHoldsIt(string name)
    {
        using var scope = NewDisposeScope();
        using var file = TorchCheckpointFile.Open(Fixture(name));
        using var expected = SafeTensorsFile.Open(Fixture("state-dict.safetensors"));   // the same tensors, contiguous
        Assert.Equal(StateDictNames, file.Names);
        foreach (string tensor in file.Names)
        {
            Assert.Equal(expected.DType(tensor), file.DType(tensor));
            Assert.Equal(expected.Shape(tensor), file.Shape(tensor));
            var read = file.Read(tensor);
            Assert.True(read.is_contiguous());
            Assert.True(SafeTensorsFileTests.Same(read, expected.Read(tensor)), $"{name}: {tensor}");
            Assert.True(SafeTensorsFileTests.Same(file.Read(tensor, ScalarType.Float32), expected.Read(tensor, ScalarType.Float32)), $"{name}: {tensor} as float32");
        }
    }

    [Fact]
    public void ALightningCheckpointGivesItsStateDictAndGlobalStepAndLeavesTheRestUnrun()
    {
        using var file = TorchCheckpointFile.Open(Fixture("lightning.ckpt"));
        Assert.Equal(875000, file.GlobalStep);
        // callbacks is keyed by the ModelCheckpoint class and holds a numpy scalar: read as inert values, left out.
        Assert.Equal(["epoch", "global_step", "pytorch-lightning_version", "callbacks", "optimizer_states", "lr_schedulers"], file.SkippedEntries);
        using var plain = TorchCheckpointFile.Open(Fixture("state-dict.ckpt"));
        Assert.Null(plain.GlobalStep);
        Assert.Empty(plain.SkippedEntries);
    }

    [Theory]
    [InlineData("malicious-os-system.ckpt", "posix.system")]            // os.system, in an entry beside the state dict
    [InlineData("malicious-eval-in-state-dict.ckpt", "builtins.eval")] // eval, as a value in the state dict
    public void ACheckpointThatAsksToRunCodeIsRefusedNamingTheGlobal(string name, string global)
    {
        string marker = "/tmp/mldiffusion-pickle-ran";
        File.Delete(marker);
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpointFile.Open(Fixture(name)).Dispose());
        Assert.Contains($"asks to call {global} while it is unpickled", e.Message);
        Assert.Contains("nothing in it was executed", e.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void AnyOtherObjectInTheStateDictIsRefusedNamingIt()
    {
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpointFile.Open(Fixture("class-in-state-dict.ckpt")).Dispose());
        Assert.Contains("has 'callback' in its state dict holding pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint, not a tensor", e.Message);
    }

    [Fact]
    public void ADiffusersBinReadsAsItsSafetensorsTwin()
    {
        using var scope = NewDisposeScope();
        string diffusers = Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers");
        using var bin = TorchCheckpointFile.Open(Path.Combine(diffusers, "unet-attn-bf16-bin", "diffusion_pytorch_model.bin"));
        using var safetensors = SafeTensorsFile.Open(Path.Combine(diffusers, "unet-attn-bf16", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(safetensors.Names.Order(), bin.Names.Order());
        foreach (string name in bin.Names) Assert.True(SafeTensorsFileTests.Same(bin.Read(name), safetensors.Read(name)), name);
    }

    [Fact]
    public void TruncatedAndForeignFilesAreErrorsThatNameTheProblem()
    {
        byte[] whole = File.ReadAllBytes(Fixture("state-dict.ckpt"));
        string path = Path.Combine(_dir, "cut.ckpt");
        File.WriteAllBytes(path, whole[..^200]);
        Assert.Contains("damaged or truncated zip archive", Assert.Throws<CheckpointFormatException>(() => TorchCheckpointFile.Open(path).Dispose()).Message);

        File.WriteAllBytes(path, "not a checkpoint at all, just text"u8.ToArray());
        Assert.Contains("is not a PyTorch checkpoint", Assert.Throws<CheckpointFormatException>(() => TorchCheckpointFile.Open(path).Dispose()).Message);

        // A whole zip whose storage of f32 is cut short: the error names the tensor when it is read.
        File.Copy(Fixture("state-dict.ckpt"), path, overwrite: true);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("state-dict/data/0")!;
            entry.Delete();
            using var stream = zip.CreateEntry("state-dict/data/0", CompressionLevel.NoCompression).Open();
            stream.Write(new byte[8]);
        }
        using var file = TorchCheckpointFile.Open(path);
        var e = Assert.Throws<CheckpointFormatException>(() => file.Read("f32").Dispose());
        Assert.Contains("is truncated: tensor 'f32' needs 24 bytes of state-dict/data/0, which has 8", e.Message);
        using var other = file.Read("f16");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
