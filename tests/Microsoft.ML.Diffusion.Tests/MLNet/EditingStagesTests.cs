using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Samplers;
using Xunit;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// DiffusionImageToImage and DiffusionInpaint as ML.NET stages: the ends of the strength, the kept region, batches against
/// single requests, model zips, and bad columns and rows named.
/// </summary>
public sealed class EditingStagesTests : IClassFixture<PipelineRoundTripTests.TrainedPipeline>
{
    private const int Size = 16, Length = Size * Size;
    private readonly PipelineRoundTripTests.TrainedPipeline _trained;

    public EditingStagesTests(PipelineRoundTripTests.TrainedPipeline trained) => _trained = trained;

    public sealed class EditRow
    {
        [VectorType(1, Size, Size)]
        public float[] Image { get; set; } = new float[Length];

        [VectorType(Length)]
        public float[] Mask { get; set; } = new float[Length];

        public int Seed { get; set; }

        [VectorType(8 * 8)]
        public float[] Small { get; set; } = new float[64];

        [VectorType(3, Size, Size)]
        public float[] Colour { get; set; } = new float[3 * Length];
    }

    public sealed class EditedPixels
    {
        [VectorType(1, Size, Size)]
        public float[] Edited { get; set; } = [];
    }

    // Horizontal gradients of different contrast, bytes 0–255 as ExtractPixels gives; masks redraw the right half.
    private static EditRow[] Rows(int count, Func<int, float>? maskValue = null) => Enumerable.Range(0, count).Select(i => new EditRow
    {
        Image = Enumerable.Range(0, Length).Select(p => 127.5f + (p % Size - 7.5f) * (4 + 3 * i)).ToArray(),
        Mask = Enumerable.Range(0, Length).Select(p => p % Size >= Size / 2 ? maskValue?.Invoke(i) ?? 1f : 0f).ToArray(),
        Seed = 20 + i,
    }).ToArray();

    private static float[][] Column(IDataView view, string column)
        => view.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    private static DiffusionImageToImageOptions ImageToImage(double strength) => new()
    {
        OutputColumnName = "Edited", SeedColumnName = "Seed", Strength = strength, Generation = { Sampler = SamplerName.Ddim, Steps = 8 },
        OutputKind = GeneratedOutputKind.Pixels, BatchSize = 3,
    };

    private static DiffusionInpaintingOptions Inpainting() => new()
    {
        OutputColumnName = "Edited", SeedColumnName = "Seed", Inpainting = { Steps = 10, JumpLength = 3, Resamplings = 2 },
        OutputKind = GeneratedOutputKind.Pixels, BatchSize = 3,
    };

    private static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what}: value {i} is {actual[i]}, expected {expected[i]}");
    }

    [Fact]
    public void StrengthZeroReturnsTheInputAndStrengthOneGeneratesAsDiffusionGenerateDoes()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(4);
        var data = ml.Data.LoadFromEnumerable(rows);

        var kept = Column(ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0)).Fit(data).Transform(data), "Edited");
        for (int i = 0; i < rows.Length; i++) AssertClose(rows[i].Image, kept[i], 1e-3, $"row {i} at strength 0");

        var redrawn = Column(ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(1)).Fit(data).Transform(data), "Edited");
        var generated = Column(ml.Transforms.DiffusionGenerate(_trained.Model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Edited", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 8 }, OutputKind = GeneratedOutputKind.Pixels, BatchSize = 3,
        }).Fit(data).Transform(data), "Edited");
        Assert.Equal(generated, redrawn);

        // Halfway stays nearer the input than a fresh sample does.
        var half = Column(ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0.5)).Fit(data).Transform(data), "Edited");
        static double Distance(float[] a, float[] b) => a.Zip(b, (x, y) => (double)(x - y) * (x - y)).Average();
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.True(Distance(half[i], rows[i].Image) > 1, $"row {i} changed at strength 0.5");
            Assert.True(Distance(half[i], rows[i].Image) < Distance(generated[i], rows[i].Image), $"row {i}: strength 0.5 keeps more of the input than strength 1");
        }
    }

    [Fact]
    public void InpaintingKeepsTheUnmaskedPixelsAndReturnsRowsWithEmptyMasksAsTheyAre()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(4, i => i == 2 ? 0f : 1f);   // row 2's mask is all zeros
        var data = ml.Data.LoadFromEnumerable(rows);
        var output = Column(ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting()).Fit(data).Transform(data), "Edited");

        for (int i = 0; i < rows.Length; i++)
        {
            var keep = Enumerable.Range(0, Length).Where(p => rows[i].Mask[p] == 0).ToArray();
            AssertClose(keep.Select(p => rows[i].Image[p]).ToArray(), keep.Select(p => output[i][p]).ToArray(), 1e-3, $"row {i}'s kept pixels");
        }
        AssertClose(rows[2].Image, output[2], 1e-3, "the row with an empty mask");
        var redrawn = Enumerable.Range(0, Length).Where(p => rows[0].Mask[p] == 1).ToArray();
        Assert.True(redrawn.Average(p => Math.Abs(output[0][p] - rows[0].Image[p])) > 1, "the masked half is redrawn");

        // A mask given as an image (white = redraw) inpaints as its vector does.
        var imageRows = ml.Data.LoadFromEnumerable(rows.Select(r => new ImageMaskRow { Image = r.Image, Mask = MaskImage(r.Mask), Seed = r.Seed }));
        var fromImages = Column(ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting()).Fit(imageRows).Transform(imageRows), "Edited");
        Assert.Equal(output, fromImages);
    }

    public sealed class ImageMaskRow
    {
        [VectorType(1, Size, Size)]
        public float[] Image { get; set; } = new float[Length];

        [Transforms.Image.ImageType(Size, Size)]
        public MLImage Mask { get; set; } = null!;

        public int Seed { get; set; }
    }

    private static MLImage MaskImage(float[] mask)
    {
        var rgba = new byte[Length * 4];
        for (int p = 0; p < Length; p++)
        {
            byte v = (byte)(mask[p] * 255);
            rgba[4 * p] = rgba[4 * p + 1] = rgba[4 * p + 2] = v;
            rgba[4 * p + 3] = 255;
        }
        return MLImage.CreateFromPixels(Size, Size, MLPixelFormat.Rgba32, rgba);
    }

    [Fact]
    public void EditingStagesRoundTripThroughZipsAndPredictionEngines()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(3);
        var data = ml.Data.LoadFromEnumerable(rows);
        foreach (var (name, fit) in new (string, Func<IDataView, ITransformer>)[]
        {
            ("image-to-image", ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0.6)).Fit),
            ("inpaint", ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting()).Fit),
        })
        {
            var transformer = fit(data);
            var before = Column(transformer.Transform(data), "Edited");
            string zip = Path.Combine(_trained.Folder, $"{name}.zip");
            ml.Model.Save(transformer, data.Schema, zip);

            var other = new MLContext();
            var loaded = other.Model.Load(zip, out _);
            Assert.Equal(before, Column(loaded.Transform(data), "Edited"));
            Assert.IsType(name == "inpaint" ? typeof(DiffusionInpaintingTransformer) : typeof(DiffusionImageToImageTransformer), loaded);

            using var engine = other.Model.CreatePredictionEngine<EditRow, EditedPixels>(loaded);
            for (int i = 0; i < rows.Length; i++)
                AssertClose(before[i], engine.Predict(rows[i]).Edited, 0.05, $"{name}: row {i} alone");   // a batch of one changes only float rounding
            ((IDisposable)loaded).Dispose();
        }
    }

    [Fact]
    public void BadColumnsStrengthsAndRowsAreNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows(3));

        var strength = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(double.NaN)));
        Assert.Equal("Strength", strength.ParamName);
        Assert.Equal("Strength", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(1.5))).ParamName);

        var missing = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0.5) with { ImageColumnName = "Photo" }).Fit(data));
        Assert.Contains("Image column 'Photo' was not found", missing.Message);
        var wrongSize = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting() with { MaskColumnName = "Small" }).Fit(data));
        Assert.Contains("Mask column 'Small' has 64 values per row, but the model needs 16×16 = 256", wrongSize.Message);
        var smallImage = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0.5) with { ImageColumnName = "Small" }).Fit(data));
        Assert.Contains("Image column 'Small' has 64 values per row, but the model needs 1×16×16 = 256", smallImage.Message);
        var channels = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting() with { ImageColumnName = "Colour" }).Fit(data));
        Assert.Contains("Image column 'Colour'", channels.Message);
        var wrongType = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting() with { MaskColumnName = "Seed" }).Fit(data));
        Assert.Contains("Mask column 'Seed'", wrongType.Message);

        var nan = Rows(3);
        nan[2].Image[5] = float.NaN;
        var nanData = ml.Data.LoadFromEnumerable(nan);
        var nanError = Assert.Throws<InvalidOperationException>(() => Column(ml.Transforms.DiffusionImageToImage(_trained.Model, ImageToImage(0.5)).Fit(nanData).Transform(nanData), "Edited"));
        Assert.Contains("Image column 'Image' has a NaN or infinite pixel at row 2", nanError.Message);

        var badMask = Rows(3);
        badMask[1].Mask[0] = 2f;
        var badMaskData = ml.Data.LoadFromEnumerable(badMask);
        var maskError = Assert.Throws<InvalidOperationException>(() => Column(ml.Transforms.DiffusionInpaint(_trained.Model, Inpainting()).Fit(badMaskData).Transform(badMaskData), "Edited"));
        Assert.Contains("Mask column 'Mask' has the value 2 at row 1", maskError.Message);
    }
}
