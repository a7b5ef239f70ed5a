using System.Diagnostics;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.SampleData;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.SampleData;

public sealed class ImageClassifierTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-classifier-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly ImageClassifierOptions ShapesOptions = new() { ClassCount = 2, FeatureDim = 32, Seed = 3 };

    private static long[] Longs(int[] labels) => labels.Select(l => (long)l).ToArray();

    [Fact]
    public void LearnsDiscsFromSquaresAndGeneralisesToHeldOutShapes()
    {
        using var train = SyntheticShapes.Generate(400, 28, seed: 1, out int[] trainLabels);
        using var test = SyntheticShapes.Generate(256, 28, seed: 2, out int[] testLabels);
        using var classifier = new ImageClassifier(ShapesOptions);
        var progress = new List<ClassifierTrainingProgress>();
        var clock = Stopwatch.StartNew();
        double loss = classifier.Train(train, Longs(trainLabels), epochs: 4, batchSize: 8, progress.Add);
        double accuracy = classifier.Accuracy(test, Longs(testLabels));
        output.WriteLine($"{progress.Count} steps in {clock.Elapsed.TotalSeconds:F1} s, last-epoch loss {loss:F4}, held-out accuracy {accuracy:P1}");

        Assert.Equal(4 * 50, progress.Count);
        Assert.Equal(200, classifier.TrainingSteps);
        Assert.All(progress, p => Assert.Equal(200, p.TotalSteps));
        Assert.Equal(4, progress[^1].Epoch);
        Assert.True(accuracy >= 0.9, $"held-out accuracy {accuracy:P1} < 90%");
        Assert.True(progress.Take(10).Average(p => p.Loss) > progress.TakeLast(10).Average(p => p.Loss));

        using var features = classifier.Features(test);
        Assert.Equal([256L, 32], features.shape);
        Assert.True(features.isfinite().all().item<bool>());
        Assert.True(features.min().item<float>() >= 0f); // after ReLU

        // Save/Load reproduces the predictions and features exactly.
        string path = Path.Combine(_dir, "classifier.bin");
        classifier.Save(path);
        using var loaded = ImageClassifier.Load(path);
        Assert.Equal(ShapesOptions, loaded.Options);
        Assert.Equal(200, loaded.TrainingSteps);
        Assert.Equal(classifier.Predict(test), loaded.Predict(test));
        using var loadedFeatures = loaded.Features(test);
        Assert.Equal(features.data<float>().ToArray(), loadedFeatures.data<float>().ToArray());
    }

    [Fact]
    public void SeededTrainingIsReproducible()
    {
        using var images = SyntheticShapes.Generate(64, 16, seed: 5, out int[] labels);
        var options = ShapesOptions with { Height = 16, Width = 16 };
        float[] Run()
        {
            using var classifier = new ImageClassifier(options);
            classifier.Train(images, Longs(labels), epochs: 1, batchSize: 16);
            using var logits = classifier.Logits(images);
            return logits.data<float>().ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void BadInputsAndForeignFilesAreRejected()
    {
        using var classifier = new ImageClassifier(ShapesOptions);
        using var wrongSize = zeros(2, 1, 16, 16);
        Assert.Contains("(N, 1, 28, 28)", Assert.Throws<ArgumentException>(() => classifier.Predict(wrongSize)).Message);
        using var images = zeros(2, 1, 28, 28);
        Assert.Throws<ArgumentException>(() => classifier.Train(images, [0L], epochs: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => classifier.Train(images, [0L, 2L], epochs: 1));

        string foreign = Path.Combine(_dir, "foreign.bin");
        File.WriteAllBytes(foreign, "PK\u0003\u0004 something else"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => ImageClassifier.Load(foreign));
        Assert.Contains(foreign, e.Message);

        string truncated = Path.Combine(_dir, "truncated.bin");
        classifier.Save(truncated);
        var bytes = File.ReadAllBytes(truncated);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        e = Assert.Throws<InvalidDataException>(() => ImageClassifier.Load(truncated));
        Assert.Contains(truncated, e.Message);
    }
}
