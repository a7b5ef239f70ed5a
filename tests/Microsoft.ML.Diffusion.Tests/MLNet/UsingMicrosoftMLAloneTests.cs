using Microsoft.ML;
using Xunit;

// Deliberately outside the Microsoft.ML.Diffusion namespaces, with `using Microsoft.ML;` as the file's only library
// using: a user's pipeline compiles with nothing else. (Helpers the test itself needs are fully qualified.)
namespace PlainMLNetUser;

public class UsingMicrosoftMLAloneTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "mldiff-plain-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    private sealed class ImageFile
    {
        public string Path { get; set; } = "";
    }

    private sealed class SeedRow
    {
        public int Seed { get; set; }
    }

    private sealed class PixelsRow
    {
        public float[] Pixels { get; set; } = [];
    }

    [Fact]
    public void APipelineNeedsOnlyUsingMicrosoftML()
    {
        string images = Path.Combine(_folder, "images");
        var paths = Microsoft.ML.Diffusion.Tests.MLNet.MLNetTestData.WriteShapeImages(images, count: 8);

        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(paths.Select(p => new ImageFile { Path = Path.GetFileName(p) }));
        var pipeline = ml.Transforms.LoadImages("Image", images, "Path")
            .Append(ml.Transforms.ResizeImages("Image", 8, 8))
            .Append(ml.Transforms.TrainDiffusion("Image", imageChannels: 1, trainingSteps: 2, batchSize: 4));
        var model = pipeline.Fit(data);
        string zip = Path.Combine(_folder, "model.zip");
        ml.Model.Save(model, data.Schema, zip);

        var fresh = new MLContext(seed: 2);
        var loaded = fresh.Model.Load(zip, out _);
        var seeds = fresh.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 3 }, new SeedRow { Seed = 4 } });
        var generate = fresh.Transforms.DiffusionGenerate(loaded, "Generated", seedColumnName: "Seed", sampler: "ddim", steps: 3)
            .Append(fresh.Transforms.ExtractPixels("Pixels", "Generated"));
        var pixels = fresh.Data.CreateEnumerable<PixelsRow>(generate.Fit(seeds).Transform(seeds), reuseRowObject: false).Select(r => r.Pixels).ToArray();

        Assert.Equal(2, pixels.Length);
        Assert.All(pixels, p => Assert.Equal(3 * 8 * 8, p.Length));   // ExtractPixels reads the grey image as RGB
        Assert.NotEqual(pixels[0], pixels[1]);
    }
}
