using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.MLNet;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>Every kind of bad input gets an exception that names the column, row or file.</summary>
public sealed class BadInputTests : IClassFixture<PipelineRoundTripTests.TrainedPipeline>
{
    private readonly PipelineRoundTripTests.TrainedPipeline _trained;

    public BadInputTests(PipelineRoundTripTests.TrainedPipeline trained) => _trained = trained;

    private sealed class TextRow { public string Image { get; set; } = ""; }

    private sealed class VectorRow
    {
        [VectorType(1, 16, 16)]
        public float[] Pixels { get; set; } = new float[256];
    }

    private sealed class UnsizedVectorRow { public float[] Pixels { get; set; } = new float[256]; }

    private sealed class TextSeedRow { public string Seed { get; set; } = ""; }

    private sealed class FractionalSeedRow { public double Seed { get; set; } }

    [Fact]
    public void MissingOrWronglyTypedImageColumnIsNamed()
    {
        var ml = new MLContext();
        var text = ml.Data.LoadFromEnumerable([new TextRow()]);
        var estimator = ml.Transforms.TrainDiffusion(MLNetTestData.TinyTraining());
        var missing = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(ml.Data.LoadFromEnumerable([new SeedRow()])));
        Assert.Contains("'Image' was not found", missing.Message);
        var wrongType = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(text));
        Assert.Contains("'Image' must be an image", wrongType.Message);
    }

    [Fact]
    public void VectorImagesOfTheWrongSizeOrWithNaNAreRejected()
    {
        var ml = new MLContext();
        var options = MLNetTestData.TinyTraining(steps: 2);
        options.ImageColumnName = "Pixels";
        options.PixelRange = PixelRange.Unit;

        options.ImageSize = 28;   // 256 values cannot be 1×28×28
        var wrongSize = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable([new VectorRow()])));
        Assert.Contains("'Pixels'", wrongSize.Message);
        Assert.Contains("1×28×28", wrongSize.Message);

        options.ImageSize = null;
        var rows = Enumerable.Range(0, 4).Select(_ => new VectorRow()).ToArray();
        rows[2].Pixels[17] = float.NaN;
        var nan = Assert.Throws<UnreadableTrainingRowException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(rows)));
        Assert.Contains("'Pixels'", nan.Message);
        Assert.Contains("row 2", nan.Message);

        rows[2].Pixels[17] = float.PositiveInfinity;
        Assert.Contains("NaN or infinite", Assert.Throws<UnreadableTrainingRowException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(rows))).Message);

        var unsized = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable([new UnsizedVectorRow()])));
        Assert.Contains("unknown size", unsized.Message);
    }

    [Fact]
    public void ImagesOfAnotherSizeThanTheModelNeedsAreNamed()
    {
        var ml = new MLContext();
        string folder = Path.Combine(_trained.Folder, "images");
        var data = ml.Data.LoadFromEnumerable(Directory.GetFiles(folder, "*.png").Select(p => new ImagePathRow { Path = Path.GetFileName(p) }));
        var options = MLNetTestData.TinyTraining(steps: 1);

        // Loaded at 20×20 (unsized column type), but the model is told 16×16.
        options.ImageSize = 16;
        var pipeline = ml.Transforms.LoadImages("Image", folder, "Path").Append(ml.Transforms.TrainDiffusion(options));
        var e = Assert.Throws<UnreadableTrainingRowException>(() => pipeline.Fit(data));
        Assert.Contains("20×20 image at row 0", e.Message);

        // Resized to a size that does not match the option.
        var resized = ml.Transforms.LoadImages("Image", folder, "Path").Append(ml.Transforms.ResizeImages("Image", 12, 12)).Append(ml.Transforms.TrainDiffusion(options));
        Assert.Contains("needs 16×16", Assert.ThrowsAny<ArgumentException>(() => resized.Fit(data)).Message);

        // Not square.
        options.ImageSize = null;
        var oblong = ml.Transforms.LoadImages("Image", folder, "Path").Append(ml.Transforms.ResizeImages("Image", 16, 8)).Append(ml.Transforms.TrainDiffusion(options));
        Assert.Contains("square", Assert.ThrowsAny<ArgumentException>(() => oblong.Fit(data)).Message);
    }

    [Fact]
    public void BadSeedColumnsAreNamed()
    {
        var ml = new MLContext();
        var text = ml.Data.LoadFromEnumerable([new TextSeedRow { Seed = "one" }]);
        var missing = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionGenerate(_trained.Model, seedColumnName: "Nope").Fit(text));
        Assert.Contains("Seed column 'Nope' was not found", missing.Message);
        var wrongType = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionGenerate(_trained.Model, seedColumnName: "Seed").Fit(text));
        Assert.Contains("must hold", wrongType.Message);

        var fractional = ml.Data.LoadFromEnumerable([new FractionalSeedRow { Seed = 1.5 }]);
        var generated = ml.Transforms.DiffusionGenerate(_trained.Model, "Generated", seedColumnName: "Seed", steps: 2).Fit(fractional).Transform(fractional);
        var e = Assert.Throws<InvalidOperationException>(() => generated.GetColumn<MLImage>("Generated").ToList());
        Assert.Contains("whole numbers", e.Message);
    }

    [Fact]
    public void ATransformerWithoutADiffusionModelIsRejected()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable([new SeedRow()]);
        var unrelated = ml.Transforms.CopyColumns("Copy", "Seed").Fit(data);
        var e = Assert.Throws<ArgumentException>(() => ml.Transforms.DiffusionGenerate(unrelated));
        Assert.Contains("contains no trained diffusion model", e.Message);
    }

    [Fact]
    public void TruncatedZipIsAClearError()
    {
        string path = Path.Combine(_trained.Folder, "truncated.zip");
        var bytes = File.ReadAllBytes(_trained.ZipPath);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(path, out _));
        Assert.Contains("zip", Innermost(e).Message + e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void CorruptModelBytesInsideTheZipAreNamed()
    {
        string path = CopyWithEntry("corrupt.zip", "DiffusionModel.mldiff", data => { data[^50] ^= 0xFF; return data; });
        var e = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(path, out _));
        var inner = Innermost(e);
        Assert.IsType<CheckpointFormatException>(inner);
        Assert.Contains("SHA-256", inner.Message);
        Assert.Contains("diffusion model stage", inner.Message);
    }

    [Fact]
    public void ZipFromANewerFormatVersionSaysSo()
    {
        // ML.NET's model header: the model signature at 0x40, versions written/readable at 0x48/0x4C.
        string path = CopyWithEntry("newer.zip", "Model.key", data =>
        {
            if (data.Length < 0x100 || System.Text.Encoding.ASCII.GetString(data, 0x40, 8) != "DIFFMODL") return null;
            BitConverter.TryWriteBytes(data.AsSpan(0x48), 0x00020001u);
            BitConverter.TryWriteBytes(data.AsSpan(0x4C), 0x00020001u);
            return data;
        });
        var e = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(path, out _));
        var inner = Innermost(e);
        Assert.Contains("newer Microsoft.ML.Diffusion", inner.Message);
        Assert.Contains("diffusion model stage", inner.Message);
    }

    private string CopyWithEntry(string name, string entrySuffix, Func<byte[], byte[]?> edit)
    {
        string path = Path.Combine(_trained.Folder, name);
        File.Copy(_trained.ZipPath, path, overwrite: true);
        int edited = 0;
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            foreach (var entry in zip.Entries.Where(e => e.FullName.EndsWith(entrySuffix, StringComparison.Ordinal)).ToList())
            {
                byte[] data;
                using (var s = entry.Open())
                using (var ms = new MemoryStream())
                {
                    s.CopyTo(ms);
                    data = ms.ToArray();
                }
                var changed = edit(data);
                if (changed is null) continue;
                string full = entry.FullName;
                entry.Delete();
                using var w = zip.CreateEntry(full).Open();
                w.Write(changed);
                edited++;
            }
        }
        Assert.Equal(1, edited);
        return path;
    }

    internal static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }
}
