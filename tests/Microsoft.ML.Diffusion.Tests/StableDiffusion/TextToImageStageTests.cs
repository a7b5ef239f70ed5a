using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Transforms.Image;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>DiffusionGenerate on a Stable Diffusion model: prompt and negative-prompt columns in, images of the asked size out, zips that refer to the model's files.</summary>
public class TextToImageStageTests
{
    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
        public long Seed { get; set; }
    }

    private static readonly PromptRow[] Rows = [new() { Prompt = "a red cat", Negative = "blurry", Seed = 1 }, new() { Prompt = "", Negative = "", Seed = 2 }];

    private static DiffusionGenerationOptions Options(GeneratedOutputKind kind) => new()
    {
        ConditionColumnName = nameof(PromptRow.Prompt), NegativePromptColumnName = nameof(PromptRow.Negative), SeedColumnName = nameof(PromptRow.Seed),
        OutputKind = kind, Generation = { Sampler = "euler", Steps = 2, GuidanceScale = 5, Width = 48, Height = 32 },
    };

    [Fact]
    public void PromptColumnsGenerateAndTheZipRefersToTheFolderInsteadOfCopyingIt()
    {
        string root = Path.Combine(Path.GetTempPath(), "sd-stage-" + Guid.NewGuid().ToString("N"));
        string folder = Path.Combine(root, "sd2-tiny");
        CopyFolder(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd2-tiny"), folder);
        try
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(Rows);
            using var model = StableDiffusionFormat.Load(folder, CPU);

            var images = ml.Transforms.DiffusionGenerate(model, Options(GeneratedOutputKind.Image)).Fit(data);
            var type = Assert.IsType<ImageDataViewType>(images.GetOutputSchema(data.Schema)["GeneratedImage"].Type);
            Assert.Equal((32, 48), (type.Height, type.Width));

            var transformer = ml.Transforms.DiffusionGenerate(model, Options(GeneratedOutputKind.Pixels)).Fit(data);
            var pixels = Column(transformer.Transform(data));
            using var direct = model.TextToImage(Options(GeneratedOutputKind.Pixels).Generation, ["a red cat", ""], [1, 2], ["blurry", ""]);
            var expected = ((direct + 1) * 127.5).clamp(0, 255).data<float>().ToArray();
            Assert.Equal(3 * 32 * 48, pixels[0].Length);
            AssertClose(expected.AsSpan(0, pixels[0].Length).ToArray(), pixels[0]);

            string zip = Path.Combine(root, "sd.zip");
            ml.Model.Save(transformer, data.Schema, zip);
            Assert.True(new FileInfo(zip).Length < 100_000, $"the zip holds {new FileInfo(zip).Length} bytes; it should refer to the model, not copy it");
            using (var archive = System.IO.Compression.ZipFile.OpenRead(zip))
            {
                Assert.DoesNotContain(archive.Entries, e => e.Name == "DiffusionModel.mldiff");
                Assert.Contains(archive.Entries, e => e.Name == "DiffusionModelSource.json");
            }
            var loaded = new MLContext().Model.Load(zip, out _);
            AssertClose(pixels[0], Column(loaded.Transform(data))[0]);
            ((IDisposable)loaded).Dispose();

            File.AppendAllText(Path.Combine(folder, "text_encoder", "config.json"), " ");
            var changed = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(zip, out _)).GetBaseException();
            Assert.IsType<CheckpointFormatException>(changed);
            Assert.Contains("have changed since the zip was saved", changed.Message);

            Directory.Delete(folder, true);
            var missing = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(zip, out _)).GetBaseException();
            Assert.Contains("does not exist here", missing.Message);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    [Fact]
    public void WrongColumnsAreNamed()
    {
        var ml = new MLContext(seed: 1);
        using var model = StableDiffusionFormat.Load(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd2-tiny"), CPU);
        var numbers = ml.Data.LoadFromEnumerable(new[] { new { Prompt = 3f, Seed = 1L } });
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DiffusionGenerate(model,
            new DiffusionGenerationOptions { ConditionColumnName = "Prompt", Generation = { Steps = 1 } }).Fit(numbers));
        Assert.Contains("a text column of prompts", error.Message);
        var odd = Assert.Throws<ArgumentException>(() => ml.Transforms.DiffusionGenerate(model,
            new DiffusionGenerationOptions { Generation = { Steps = 1, Width = 50 } }).Fit(numbers).Transform(numbers).Preview());
        Assert.Contains("multiples of 8", odd.Message);
    }

    private static float[][] Column(IDataView view)
    {
        var rows = new List<float[]>();
        using var cursor = view.GetRowCursor([view.Schema["GeneratedImage"]]);
        var getter = cursor.GetGetter<VBuffer<float>>(view.Schema["GeneratedImage"]);
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            rows.Add(buffer.DenseValues().ToArray());
        }
        return rows.ToArray();
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 0.5f, $"largest difference {worst} (of 255)");
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(file, file.Replace(from, to));
    }
}
