using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Transforms.Image;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// DiffusionImageToImage and DiffusionInpaint on a Stable Diffusion model: prompt and negative-prompt columns, images of
/// the options' size (not the model's, not square), the same images as the pipelines, and zips that keep the settings.
/// </summary>
public class LatentEditingStageTests
{
    private const int H = 32, W = 48;

    private sealed class EditRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
        public long Seed { get; set; }

        [VectorType(3 * H * W)]
        public float[] Image { get; set; } = [];

        [VectorType(H * W)]
        public float[] Mask { get; set; } = [];
    }

    private static string Folder => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd2-tiny");

    // Byte pixels of smooth seeded images; the first row's mask is a block off the latent grid, the second's all zeros.
    private static EditRow[] Rows()
    {
        var rows = new EditRow[2];
        for (int r = 0; r < 2; r++)
        {
            var rng = new Random(r + 10);
            var image = new float[3 * H * W];
            for (int c = 0; c < 3; c++)
            {
                double a = rng.NextDouble(), b = rng.NextDouble();
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        image[(c * H + y) * W + x] = (float)Math.Round(255 * (0.5 + 0.4 * Math.Sin(a * 6 + x * b / 5.0 + y / 7.0)));
            }
            var mask = new float[H * W];
            if (r == 0)
                for (int y = 3; y < 21; y++)
                    for (int x = 10; x < 35; x++)
                        mask[y * W + x] = 1;
            rows[r] = new EditRow { Prompt = r == 0 ? "a red cat" : "", Negative = r == 0 ? "blurry" : "", Seed = r + 1, Image = image, Mask = mask };
        }
        return rows;
    }

    private static Tensor Input(EditRow[] rows)
        => tensor(rows.SelectMany(r => r.Image).Select(v => v / 127.5f - 1f).ToArray(), [rows.Length, 3, H, W]);

    [Fact]
    public void ImageToImageReadsPromptColumnsAndImagesOfTheOptionsSize()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows();
        var data = ml.Data.LoadFromEnumerable(rows);
        using var model = StableDiffusionFormat.Load(Folder, CPU);
        DiffusionImageToImageOptions Options(GeneratedOutputKind kind) => new()
        {
            ImageColumnName = "Image", ConditionColumnName = "Prompt", NegativePromptColumnName = "Negative", SeedColumnName = "Seed", Strength = 0.5,
            OutputKind = kind, Generation = { Sampler = "euler", Steps = 3, GuidanceScale = 5, Width = W, Height = H },
        };

        var estimator = ml.Transforms.DiffusionImageToImage(model, Options(GeneratedOutputKind.Image));
        var type = Assert.IsType<ImageDataViewType>(estimator.Fit(data).GetOutputSchema(data.Schema)["EditedImage"].Type);
        Assert.Equal((H, W), (type.Height, type.Width));

        var transformer = ml.Transforms.DiffusionImageToImage(model, Options(GeneratedOutputKind.Pixels)).Fit(data);
        var pixels = Column(transformer.Transform(data), "EditedImage");
        using var input = Input(rows);
        using var direct = model.ImageToImageWithPrompts(Options(GeneratedOutputKind.Pixels).Generation, input, 0.5, ["a red cat", ""], [1, 2], ["blurry", ""]);
        AssertClose(Bytes(direct), pixels);

        string zip = Path.Combine(Path.GetTempPath(), "sd-i2i-" + Guid.NewGuid().ToString("N") + ".zip");
        try
        {
            ml.Model.Save(transformer, data.Schema, zip);
            var loaded = new MLContext().Model.Load(zip, out _);
            var options = Assert.IsType<DiffusionImageToImageTransformer>(loaded).Options;
            Assert.Equal("Negative", options.NegativePromptColumnName);
            AssertClose(pixels, Column(loaded.Transform(data), "EditedImage"));
            ((IDisposable)loaded).Dispose();
        }
        finally
        {
            File.Delete(zip);
        }
    }

    [Fact]
    public void InpaintingKeepsUnmaskedPixelsAndFollowsThePrompt()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows();
        var data = ml.Data.LoadFromEnumerable(rows);
        using var model = StableDiffusionFormat.Load(Folder, CPU);
        var options = new DiffusionInpaintingOptions
        {
            ConditionColumnName = "Prompt", NegativePromptColumnName = "Negative", SeedColumnName = "Seed", Width = W, Height = H,
            OutputKind = GeneratedOutputKind.Pixels, Inpainting = { Steps = 4, JumpLength = 2, Resamplings = 2, GuidanceScale = 4 },
        };
        var transformer = ml.Transforms.DiffusionInpaint(model, options).Fit(data);
        var type = Assert.IsType<VectorDataViewType>(transformer.GetOutputSchema(data.Schema)["InpaintedImage"].Type);
        Assert.Equal(3 * H * W, type.Size);
        var pixels = Column(transformer.Transform(data), "InpaintedImage");

        using var input = Input(rows.Take(1).ToArray());
        using var mask = tensor(rows[0].Mask, [1, 1, H, W]);
        using var direct = model.InpaintWithPrompts(options.Inpainting, input, mask, ["a red cat"], [1], ["blurry"]);
        AssertClose(Bytes(direct)[0], pixels[0]);
        int redrawn = 0;
        for (int i = 0; i < pixels[0].Length; i++)
        {
            if (rows[0].Mask[i % (H * W)] == 0) Assert.True(Math.Abs(pixels[0][i] - rows[0].Image[i]) < 1e-3, $"kept pixel {i} changed");
            else if (Math.Abs(pixels[0][i] - rows[0].Image[i]) > 1) redrawn++;
        }
        Assert.True(redrawn > 100, $"only {redrawn} masked values changed");
        AssertClose(rows[1].Image, pixels[1]);   // an all-zero mask returns the row as it is

        var otherPrompt = ml.Data.LoadFromEnumerable(rows.Select(r => new EditRow { Prompt = "a blue house", Negative = r.Negative, Seed = r.Seed, Image = r.Image, Mask = r.Mask }));
        var other = Column(transformer.Transform(otherPrompt), "InpaintedImage");
        Assert.True(other[0].Zip(pixels[0], (a, b) => Math.Abs(a - b)).Max() > 1, "the prompt column steers the redrawn region");
    }

    [Fact]
    public void SizesAndColumnsAreExplained()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows());
        using var model = StableDiffusionFormat.Load(Folder, CPU);
        var wrongSize = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionImageToImage(model,
            new DiffusionImageToImageOptions { ConditionColumnName = "Prompt", Generation = { Steps = 2, Width = 64, Height = H } }).Fit(data));
        Assert.Contains("Image column 'Image' has 4608 values per row, but the stage needs 3×32×64 = 6144", wrongSize.Message);
        var odd = Assert.Throws<ArgumentException>(() => ml.Transforms.DiffusionInpaint(model,
            new DiffusionInpaintingOptions { Width = 50, Height = H }).Fit(data));
        Assert.Contains("multiples of 8", odd.Message);
        var mask = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionInpaint(model,
            new DiffusionInpaintingOptions { MaskColumnName = "Prompt", Width = W, Height = H }).Fit(data));
        Assert.Contains("Mask column 'Prompt' must be an image or a known-size vector", mask.Message);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionInpaint(model,
            new DiffusionInpaintingOptions { NegativePromptColumnName = "Seed", Width = W, Height = H }).Fit(data));
        Assert.Contains("Negative prompt column 'Seed' must hold text", negative.Message);
    }

    private static float[][] Bytes(Tensor images)
    {
        using var bytes = ((images + 1) * 127.5).clamp(0, 255);
        var all = bytes.data<float>().ToArray();
        int length = all.Length / (int)images.shape[0];
        return Enumerable.Range(0, (int)images.shape[0]).Select(i => all.AsSpan(i * length, length).ToArray()).ToArray();
    }

    private static float[][] Column(IDataView view, string name)
    {
        var rows = new List<float[]>();
        using var cursor = view.GetRowCursor([view.Schema[name]]);
        var getter = cursor.GetGetter<VBuffer<float>>(view.Schema[name]);
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            rows.Add(buffer.DenseValues().ToArray());
        }
        return rows.ToArray();
    }

    private static void AssertClose(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) AssertClose(expected[i], actual[i]);
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 0.5f, $"largest difference {worst} (of 255)");
    }
}
