using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Adapters;
using Microsoft.ML.Diffusion.Tests.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// Model zips of stages whose model has LoRA adapters fused: the zip refers to the base (the tiny SD 1.x folder, a
/// pixel model's checkpoint file or diffusers folder) by path and SHA-256 and holds the adapters, never a copy of the
/// base; loading it fuses them into the base again and generates bit for bit what the model generated before saving.
/// A base in no file, a base missing or changed, and a corrupt adapter entry are refused with messages that say so,
/// and a refused save leaves the previous zip as it was.
/// </summary>
public sealed class LoraModelZipTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("mldiffusion-lora-zip-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static string Lora(string name) => TrainedLoraFileTests.Lora(name);

    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public int Seed { get; set; }
    }

    private sealed class PixelRow
    {
        [VectorType(1, 16, 16)]
        public float[] Pixels { get; set; } = new float[256];
    }

    private static float[][] Generated(IDataView view) =>
        [.. view.GetColumn<VBuffer<float>>("GeneratedImage").Select(v => v.DenseValues().ToArray())];

    private static void AssertBitEqual(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(expected[i].Select(BitConverter.SingleToInt32Bits).SequenceEqual(actual[i].Select(BitConverter.SingleToInt32Bits)),
                $"image {i} differs after loading: largest difference {expected[i].Zip(actual[i], (a, b) => Math.Abs(a - b)).Max():G3}");
    }

    private static string[] Entries(string zip)
    {
        using var archive = ZipFile.OpenRead(zip);
        return [.. archive.Entries.Select(e => e.Name)];
    }

    // The versions ML.NET's header of the stage with this model signature records (signature at 0x40, written and
    // readable versions at 0x48 and 0x4C of its Model.key).
    private static (uint Written, uint Readable) StageVersion(string zip, string signature)
    {
        using var archive = ZipFile.OpenRead(zip);
        foreach (var entry in archive.Entries.Where(e => e.Name == "Model.key"))
        {
            using var stream = entry.Open();
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            byte[] data = buffer.ToArray();
            if (data.Length >= 0x100 && System.Text.Encoding.ASCII.GetString(data, 0x40, 8) == signature)
                return (BitConverter.ToUInt32(data, 0x48), BitConverter.ToUInt32(data, 0x4C));
        }
        throw new InvalidOperationException($"'{zip}' has no stage {signature}.");
    }

    private static Exception LoadError(string zip) => Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(zip, out _)).GetBaseException();

    // The library's UNet with attention at 8×8, perturbed so that every layer (and so every adapter) changes its output.
    private static DiffusionModel PixelModel(int seed = 3)
    {
        manual_seed(seed);
        var network = NoisePredictors.Create(DiffusionTrainerTests.TinyNetwork);
        using (no_grad()) foreach (var p in network.parameters()) p.add_(randn_like(p) * 0.02);
        return new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (string dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
    }

    [Fact]
    public void AStableDiffusionZipRefersToTheFolderAndFusesItsLorasAgainInOrder()
    {
        string folder = Path.Combine(_temp, "sd1-tiny");
        CopyFolder(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd1-tiny"), folder);
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a red cat", Seed = 1 }, new PromptRow { Prompt = "", Seed = 2 } });
        var options = new DiffusionGenerationOptions
        {
            ConditionColumnName = "Prompt", SeedColumnName = "Seed", OutputKind = GeneratedOutputKind.Pixels,
            Generation = { Sampler = "euler", Steps = 2, GuidanceScale = 5, Width = 32, Height = 32 },
        };
        string zip = Path.Combine(_temp, "sd-lora.zip");
        float[][] before;
        using (var model = StableDiffusionFormat.Load(folder, CPU))
        {
            using var kohya = model.LoadLora(Lora("kohya"), 0.7);          // UNet and text encoder, with alpha
            using var second = model.LoadLora(Lora("attn_procs"), -0.4);   // a second one on the same weights: the order matters
            var stage = ml.Transforms.DiffusionGenerate(model, options).Fit(data);
            before = Generated(stage.Transform(data));
            ml.Model.SaveAtomically(stage, data.Schema, zip);
        }

        var entries = Entries(zip);
        Assert.Contains("DiffusionModelSource.json", entries);
        Assert.Contains("LoraAdapters.json", entries);
        Assert.Contains("LoraAdapter1.safetensors", entries);
        Assert.Contains("LoraAdapter2.safetensors", entries);
        Assert.DoesNotContain("DiffusionModel.mldiff", entries);
        // The adapters' files are 321 KB and 106 KB; the model's 10 MB.
        Assert.True(new FileInfo(zip).Length < 500_000, $"the zip holds {new FileInfo(zip).Length} bytes; it should hold the adapters, not the model");

        var loaded = new MLContext().Model.Load(zip, out _);
        try
        {
            var model = DiffusionTrainingTransformer.FindModel(loaded);
            var fused = LoraFusion.Of(model).Fused;
            Assert.Equal(new[] { 0.7, -0.4 }, fused.Select(f => f.Scale));
            Assert.Equal(new[] { Lora("kohya"), Lora("attn_procs") }, fused.Select(f => f.Path));
            Assert.Equal(12, fused[0].TextEncoderLayers);
            AssertBitEqual(before, Generated(loaded.Transform(data)));
        }
        finally
        {
            ((IDisposable)loaded).Dispose();
        }

        // A different base at the path: the adapters were fused on another model.
        File.AppendAllText(Path.Combine(folder, "unet", "config.json"), " ");
        var changed = LoadError(zip);
        Assert.IsType<CheckpointFormatException>(changed);
        Assert.Contains($"refers to '{Path.GetFullPath(folder)}' as the base of its LoRA adapters (kohya.safetensors, attn_procs.safetensors)", changed.Message);
        Assert.Contains("trained or fused on another base model", changed.Message);

        Directory.Delete(folder, true);
        var missing = LoadError(zip);
        Assert.IsType<CheckpointFormatException>(missing);
        Assert.Contains($"'{Path.GetFullPath(folder)}', which does not exist here", missing.Message);
        Assert.Contains("it holds only the LoRA adapters fused into it", missing.Message);
    }

    [Fact]
    public void APixelModelZipRefersToItsCheckpointAndHoldsTheTrainedLora()
    {
        var ml = new MLContext(seed: 1);
        string baseFile = Path.Combine(_temp, "base.mldiff");
        using var start = PixelModel();
        start.Save(baseFile);   // the base's file: zips refer to it
        var images = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new PixelRow
        {
            Pixels = [.. Enumerable.Range(0, 256).Select(p => (float)((i * 37 + p * 11) % 256))],
        }).ToList());
        var training = new DiffusionTrainingOptions
        {
            ImageColumnName = "Pixels", ImageChannels = 1, StartFrom = start, Lora = new LoraTrainingOptions { Rank = 2 },
            TrainingSteps = 3, BatchSize = 4, WarmupSteps = 0, LearningRate = 1e-2, Seed = 1, Device = "cpu",
        };
        using var trained = ml.Transforms.TrainDiffusion(training).Fit(images);
        Assert.True(trained.Lora!.IsFused);

        var seeds = ml.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 5 }, new SeedRow { Seed = 6 } });
        var options = new DiffusionGenerationOptions { SeedColumnName = "Seed", OutputKind = GeneratedOutputKind.Pixels, Generation = { Sampler = "ddim", Steps = 4 } };
        var stage = ml.Transforms.DiffusionGenerate(trained, options).Fit(seeds);
        var before = Generated(stage.Transform(seeds));

        // The training stage's zip and the generation stage's zip: each refers to base.mldiff and holds the adapter.
        string trainingZip = Path.Combine(_temp, "trained.zip"), generationZip = Path.Combine(_temp, "generate.zip");
        ml.Model.SaveAtomically(trained, images.Schema, trainingZip);
        ml.Model.SaveAtomically(stage, seeds.Schema, generationZip);
        foreach (string zip in new[] { trainingZip, generationZip })
        {
            var entries = Entries(zip);
            Assert.DoesNotContain("DiffusionModel.mldiff", entries);
            Assert.Contains("LoraAdapter1.safetensors", entries);
            Assert.True(new FileInfo(zip).Length < new FileInfo(baseFile).Length / 4, $"'{zip}' holds {new FileInfo(zip).Length} bytes; the base alone is {new FileInfo(baseFile).Length}");
        }

        var loadedStage = new MLContext().Model.Load(generationZip, out _);
        var loadedTraining = new MLContext().Model.Load(trainingZip, out _);
        try
        {
            AssertBitEqual(before, Generated(loadedStage.Transform(seeds)));
            var model = DiffusionTrainingTransformer.FindModel(loadedTraining);
            var lora = Assert.Single(LoraFusion.Of(model).Fused);
            Assert.Equal(("", 1.0), (lora.Path, lora.Scale));
            AssertBitEqual(before, Generated(ml.Transforms.DiffusionGenerate(model, options).Fit(seeds).Transform(seeds)));
        }
        finally
        {
            ((IDisposable)loadedStage).Dispose();
            ((IDisposable)loadedTraining).Dispose();
        }

        // Another model saved over the base: refused on load, naming the path.
        using (var other = PixelModel(seed: 4)) other.Save(baseFile);
        var changed = LoadError(generationZip);
        Assert.IsType<CheckpointFormatException>(changed);
        Assert.Contains($"refers to '{Path.GetFullPath(baseFile)}' as the base of its LoRA adapters (a trained LoRA)", changed.Message);
        Assert.Contains("trained or fused on another base model", changed.Message);

        // ... and on save: the file no longer holds the base the model in memory has the LoRA fused on.
        var stale = Assert.ThrowsAny<Exception>(() => ml.Model.SaveAtomically(stage, seeds.Schema, generationZip)).GetBaseException();
        Assert.IsType<InvalidOperationException>(stale);
        Assert.Contains($"'{Path.GetFullPath(baseFile)}' has changed since the model was read from or written to it", stale.Message);

        File.Delete(baseFile);
        var missing = LoadError(generationZip);
        Assert.Contains($"refers to the checkpoint file '{Path.GetFullPath(baseFile)}', which does not exist here", missing.Message);
    }

    [Fact]
    public void ABaseInNoFileIsRefusedUntilSavedAndADiffusersFolderIsABase()
    {
        var ml = new MLContext(seed: 1);
        var seeds = ml.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 }, new SeedRow { Seed = 2 } });
        var options = new DiffusionGenerationOptions { SeedColumnName = "Seed", OutputKind = GeneratedOutputKind.Pixels, Generation = { Sampler = "ddim", Steps = 3 } };
        string zip = Path.Combine(_temp, "unet2d.zip");
        using var model = TrainedLoraFileTests.UNet2D();   // built in memory from the UNet's files alone: no base file

        // The user's earlier zip survives a refused save.
        var plainStage = ml.Transforms.DiffusionGenerate(model, options).Fit(seeds);
        ml.Model.SaveAtomically(plainStage, seeds.Schema, zip);
        Assert.Contains("DiffusionModel.mldiff", Entries(zip));   // without adapters a pixel model's zip holds its checkpoint
        Assert.Equal((0x00010004u, 0x00010003u), StageVersion(zip, "DIFFGENR"));
        byte[] earlier = File.ReadAllBytes(zip);
        using (var lora = model.LoadLora(Lora("trained-unet2d"), 0.8))
        {
            var stage = ml.Transforms.DiffusionGenerate(model, options).Fit(seeds);
            var refused = Assert.ThrowsAny<Exception>(() => ml.Model.SaveAtomically(stage, seeds.Schema, zip)).GetBaseException();
            Assert.IsType<InvalidOperationException>(refused);
            Assert.Contains("LoRA adapters fused into it (trained-unet2d.safetensors)", refused.Message);
            Assert.Contains("no file holds this model's base weights", refused.Message);
            Assert.Contains("Save the base first", refused.Message);
            Assert.Equal(earlier, File.ReadAllBytes(zip));

            // Written with the LoRA fused, the folder holds the merged weights: it is no base either.
            model.SaveDiffusers(Path.Combine(_temp, "merged"));
            Assert.Contains("Save the base first", Assert.ThrowsAny<Exception>(() => ml.Model.SaveAtomically(stage, seeds.Schema, zip)).GetBaseException().Message);
        }

        // Saved without the LoRA, the folder is the base; a model loaded from it has it as its base too.
        string folder = Path.Combine(_temp, "unet2d");
        model.SaveDiffusers(folder);
        using var fromFolder = DiffusersFormat.Load(folder, CPU);
        foreach (var m in new[] { model, fromFolder })
        {
            using var lora = m.LoadLora(Lora("trained-unet2d"), 0.8);
            var stage = ml.Transforms.DiffusionGenerate(m, options).Fit(seeds);
            var before = Generated(stage.Transform(seeds));
            ml.Model.SaveAtomically(stage, seeds.Schema, zip);
            Assert.DoesNotContain("DiffusionModel.mldiff", Entries(zip));
            Assert.Equal((0x00010004u, 0x00010004u), StageVersion(zip, "DIFFGENR"));   // an older library refuses it rather than drop the adapter
            var loaded = new MLContext().Model.Load(zip, out _);
            try
            {
                AssertBitEqual(before, Generated(loaded.Transform(seeds)));
            }
            finally
            {
                ((IDisposable)loaded).Dispose();
            }
        }

        // A different model written into the folder: the zip's adapter was fused on another base.
        using (var other = TrainedLoraFileTests.UNet2D())
        {
            using (no_grad()) foreach (var p in other.Network.parameters()) p.mul_(1.5);
            other.SaveDiffusers(folder);
        }
        var changed = LoadError(zip);
        Assert.IsType<CheckpointFormatException>(changed);
        Assert.Contains($"refers to '{Path.GetFullPath(folder)}' as the base of its LoRA adapters (trained-unet2d.safetensors)", changed.Message);
        Assert.Contains("trained or fused on another base model", changed.Message);
    }

    [Fact]
    public void ACorruptAdapterEntryIsRefused()
    {
        var ml = new MLContext(seed: 1);
        string baseFile = Path.Combine(_temp, "base.mldiff");
        using var model = PixelModel();
        model.Save(baseFile);
        // The trained UNet2DModel file's layer names do not fit the library's UNet; write an adapter for this network.
        string loraFile;
        using (var trainer = new Diffusion.Training.DiffusionTrainer(model, new LoraTrainingOptions { Rank = 2 }, new Diffusion.Training.DiffusionTrainerOptions { Seed = 1, EmaDecay = 0 }))
        {
            using (no_grad()) foreach (var layer in ((LoraNetwork)trainer.TrainedModule).Layers) layer.Up.copy_(randn_like(layer.Up) * 0.1);
            loraFile = trainer.SaveLora(Path.Combine(_temp, "adapter.safetensors"));
        }
        using var lora = model.LoadLora(loraFile, 0.5);
        var seeds = ml.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 } });
        var stage = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions { SeedColumnName = "Seed", Generation = { Steps = 2 } }).Fit(seeds);
        string zip = Path.Combine(_temp, "adapter.zip");
        ml.Model.SaveAtomically(stage, seeds.Schema, zip);

        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Update))
        {
            var entry = archive.Entries.Single(e => e.Name == "LoraAdapter1.safetensors");
            byte[] bytes;
            using (var s = entry.Open())
            using (var buffer = new MemoryStream())
            {
                s.CopyTo(buffer);
                bytes = buffer.ToArray();
            }
            bytes[^3] ^= 0x40;   // one weight's bits
            string name = entry.FullName;
            entry.Delete();
            using var replaced = archive.CreateEntry(name).Open();
            replaced.Write(bytes);
        }
        var corrupt = LoadError(zip);
        Assert.IsType<CheckpointFormatException>(corrupt);
        Assert.Contains("LoRA adapter 'LoraAdapter1.safetensors' is corrupt: its SHA-256", corrupt.Message);
    }

    [Fact]
    public void ACopyOnAnotherDeviceCarriesTheLorasFusedIntoTheBase()
    {
        using var model = TrainedLoraFileTests.UNet2D();
        using var lora = model.LoadLora(Lora("trained-unet2d"), 0.8);
        using var copy = model.CopyTo(CPU);   // a copy holds the fused weights; CopyInto sets them back before fusing
        var copies = LoraFusion.Of(model).CopyInto(copy);
        Assert.Equal(0.8, Assert.Single(copies).Scale);
        Assert.Equal(1, copy.FusedAdapters);
        var ours = model.Network.parameters().ToList();
        var theirs = copy.Network.parameters().ToList();
        for (int i = 0; i < ours.Count; i++) Assert.True(ours[i].eq(theirs[i]).all().item<bool>(), $"parameter {i} differs");
        copies[0].Unfuse();
        using var plain = TrainedLoraFileTests.UNet2D();
        var original = plain.Network.parameters().ToList();
        for (int i = 0; i < original.Count; i++) Assert.True(original[i].eq(theirs[i]).all().item<bool>(), $"parameter {i} is not the base's after unfusing");
    }
}
