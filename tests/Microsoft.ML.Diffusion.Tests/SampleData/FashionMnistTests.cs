using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.SampleData;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.Diffusion.Tests.SampleData;

public sealed class FashionMnistTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-fmnist-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ClassNamesAndPromptsCoverTheTenClasses()
    {
        Assert.Equal(10, FashionMnist.ClassNames.Count);
        Assert.Equal(10, FashionMnist.Prompts.Count);
        Assert.Equal("T-shirt/top", FashionMnist.ClassNames[0]);
        Assert.Equal("Ankle boot", FashionMnist.ClassNames[9]);
        Assert.Equal("an ankle boot", FashionMnist.Prompts[9]);
        Assert.Equal(10, FashionMnist.Prompts.Distinct().Count());
    }

    [Fact]
    public void AMissingFolderIsUnavailableWithAnInstallHint()
    {
        string empty = Path.Combine(_dir, "nothing-here");
        Assert.False(FashionMnist.IsAvailable(out string reason, empty));
        Assert.Contains("train-images-idx3-ubyte", reason);
        Assert.Contains("install-data.sh", reason);
        Assert.Contains("dataset-fashion-mnist", reason);
        var e = Assert.Throws<FileNotFoundException>(() => FashionMnist.Load(FashionMnistSplit.Test, empty));
        Assert.Contains("dataset-fashion-mnist", e.Message);
    }

    [Fact]
    public void LoadsADataViewFromAFolderOfIdxFiles()
    {
        // A miniature Fashion-MNIST: 4 training and 3 test images, gzipped test files, plain training ones.
        var trainPixels = new byte[4 * 28 * 28];
        for (int i = 0; i < trainPixels.Length; i++) trainPixels[i] = (byte)(i % 256);
        IdxFile.WriteImages(Path.Combine(_dir, "train-images-idx3-ubyte"), trainPixels, 4, 28, 28);
        IdxFile.WriteLabels(Path.Combine(_dir, "train-labels-idx1-ubyte"), [0, 1, 2, 3]);
        var testPixels = new byte[3 * 28 * 28];
        testPixels[28 * 28] = 255;
        IdxFile.WriteImages(Path.Combine(_dir, "t10k-images-idx3-ubyte.gz"), testPixels, 3, 28, 28);
        IdxFile.WriteLabels(Path.Combine(_dir, "t10k-labels-idx1-ubyte.gz"), [9, 5, 7]);
        Assert.True(FashionMnist.IsAvailable(out _, _dir));

        var rows = FashionMnist.Load(FashionMnistSplit.Test, _dir);
        Assert.Equal([9, 5, 7], rows.Select(r => r.Label));
        Assert.Equal(["Ankle boot", "Sandal", "Sneaker"], rows.Select(r => r.ClassName));
        Assert.Equal("a sandal", rows[1].Prompt);
        Assert.Equal(255f, rows[1].Pixels[0]);

        var ml = new MLContext(seed: 1);
        var view = FashionMnist.LoadDataView(ml, FashionMnistSplit.Train, _dir);
        var pixels = Assert.IsType<VectorDataViewType>(view.Schema["Pixels"].Type);
        Assert.Equal(NumberDataViewType.Single, pixels.ItemType);
        Assert.Equal([1, 28, 28], pixels.Dimensions.ToArray());
        Assert.Equal(NumberDataViewType.Int32, view.Schema["Label"].Type);
        Assert.Equal(TextDataViewType.Instance, view.Schema["ClassName"].Type);
        Assert.Equal(TextDataViewType.Instance, view.Schema["Prompt"].Type);
        Assert.Equal(["a t-shirt", "a pair of trousers", "a pullover", "a dress"], view.GetColumn<string>("Prompt"));
        var first = view.GetColumn<float[]>("Pixels").First();
        Assert.Equal(784, first.Length);
        Assert.Equal(100f, first[100]);

        IdxFile.WriteLabels(Path.Combine(_dir, "t10k-labels-idx1-ubyte.gz"), [9, 5, 12]);
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(FashionMnistSplit.Test, _dir));
        Assert.Contains("label 12", e.Message);
    }

    [SkippableFact]
    public void LoadsTheRealTestSplit_WhenDataInstalled()
    {
        Skip.IfNot(FashionMnist.IsAvailable(out string reason), reason);
        var ml = new MLContext(seed: 1);
        var view = FashionMnist.LoadDataView(ml, FashionMnistSplit.Test);
        var labels = view.GetColumn<int>("Label").ToArray();
        Assert.Equal(10_000, labels.Length);
        Assert.Equal(Enumerable.Range(0, 10), labels.Distinct().Order());
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(1000, labels.Count(l => l == c)));
        var pixels = Assert.IsType<VectorDataViewType>(view.Schema["Pixels"].Type);
        Assert.Equal([1, 28, 28], pixels.Dimensions.ToArray());
        var names = view.GetColumn<string>("ClassName").ToArray();
        Assert.Equal(10, names.Distinct().Count());
        float max = view.GetColumn<float[]>("Pixels").Take(100).Max(p => p.Max());
        Assert.True(max > 1f && max <= 255f, $"pixels should be 0–255, max {max}");

        using var images = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] tensorLabels);
        Assert.Equal([10_000L, 1, 28, 28], images.shape);
        Assert.Equal(labels.Select(l => (long)l), tensorLabels);
        Assert.InRange(images.min().item<float>(), -1f, -0.99f);
        Assert.InRange(images.max().item<float>(), 0.99f, 1f);
        output.WriteLine(reason);
    }
}
