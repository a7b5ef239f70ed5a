using System.Diagnostics;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

internal sealed record ClassifierResult(int Epochs, int Batch, double TestAccuracy, double TrainingSeconds, string Path);

internal sealed record QualityRow(string Source, int? Steps, double? TrainingMinutes, double? TrainingMinutesAtReferencePace, double? Guidance,
    int Images, double FrechetDistance, double Precision, double Recall, double ClassAccuracy, double SamplingSeconds);

internal sealed record QualityReport(string Timestamp, VersionsInfo Versions, string Sampler, int SamplerSteps, int ReferenceImages,
    ClassifierResult Classifier, QualityRow[] Rows, long FirstSeed, long LastSeed);

/// <summary>
/// The evaluation half of the Fashion-MNIST quality study. A CNN classifier trained on the training set is
/// the feature extractor and the judge of class accuracy. The reference set is 10,000 training images;
/// the floor is the score of as many real test images (never seen by the classifier or the diffusion
/// model) as there are generated images per row, with the same class balance. Image i of a row has sampling seed
/// <see cref="BenchmarkOptions.QualityFirstSeed"/> + i and class i mod 10, so another first seed scores the same snapshots
/// on a second, disjoint seed set.
/// </summary>
internal static class FashionQualityEvaluation
{
    internal const int ReferenceImages = 10_000;
    private static readonly GenerationOptions Sampling = new() { Sampler = SamplerName.DpmSolverPlusPlus, Steps = 20 };

    /// <summary>The tag of a non-default seed set in report and grid names ("" for seeds from 0, whose files keep their names).</summary>
    public static string SeedTag(BenchmarkOptions options) => options.QualityFirstSeed == 0 ? "" : $"-seeds{options.QualityFirstSeed}";

    public static QualityReport Run(BenchmarkOptions options, VersionsInfo versions, string directory, IReadOnlyList<QualitySnapshot> snapshots,
        string? gridDirectory, Action<string> log)
    {
        using var train = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] trainLabels);
        using var test = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] testLabels);
        var classifierResult = TrainOrLoadClassifier(options, directory, train, trainLabels, test, testLabels, log);
        using var classifier = ImageClassifier.Load(classifierResult.Path);

        using var reference = train.narrow(0, 0, ReferenceImages);
        using var evaluator = classifier.CreateQualityEvaluator(reference);
        int perClass = options.QualitySamples / FashionMnist.ClassCount;
        int count = perClass * FashionMnist.ClassCount;
        var intended = Enumerable.Range(0, count).Select(i => (long)(i % FashionMnist.ClassCount)).ToArray();
        var rows = new List<QualityRow>();

        // The floor: real test images, class-balanced and ordered like the generated ones.
        using (var floorImages = ClassInterleavedImages.Select(test, testLabels, FashionMnist.ClassCount, perClass))
        {
            var floor = evaluator.Evaluate(floorImages, intended);
            rows.Add(new QualityRow("real test images", null, null, null, null, count, floor.FrechetDistance, floor.Precision, floor.Recall, floor.ClassAccuracy!.Value, 0));
            log($"[quality] floor (real test images): FD {floor.FrechetDistance:F3}, precision {floor.Precision:P1}, recall {floor.Recall:P1}, class accuracy {floor.ClassAccuracy:P1}");
        }

        var seeds = Enumerable.Range(0, count).Select(i => options.QualityFirstSeed + (long)i).ToArray();
        string seedTag = SeedTag(options);
        log($"[quality] sampling seeds {options.QualityFirstSeed}–{options.QualityFirstSeed + (long)count - 1}");
        foreach (var snapshot in snapshots)
        {
            using var model = DiffusionModel.Load(snapshot.Path, CPU);
            foreach (double w in options.QualityGuidance)
            {
                var clock = Stopwatch.StartNew();
                using var images = Generate(model, seeds, intended, w);
                double seconds = clock.Elapsed.TotalSeconds;
                var report = evaluator.Evaluate(images, intended);
                rows.Add(new QualityRow("generated", snapshot.Steps, snapshot.TrainingSeconds / 60, snapshot.TrainingMinutesAtReferencePace, w, count,
                    report.FrechetDistance, report.Precision, report.Recall, report.ClassAccuracy!.Value, seconds));
                log($"[quality] {snapshot.Steps} steps, guidance {w}: FD {report.FrechetDistance:F3}, precision {report.Precision:P1}, recall {report.Recall:P1}, class accuracy {report.ClassAccuracy:P1} ({seconds:F0} s to sample)");
                if (gridDirectory is not null && snapshot == snapshots[^1])
                    ClassInterleavedImages.SaveGrid(images, FashionMnist.ClassCount, perClass, Path.Combine(gridDirectory, $"fashion-class-{snapshot.Steps}-steps-guidance-{w:0.#}{seedTag}.png"), columns: 10);
            }
        }
        return new QualityReport(DateTimeOffset.UtcNow.ToString("O"), versions, "DPM-Solver++(2M)", Sampling.Steps!.Value, ReferenceImages, classifierResult, rows.ToArray(),
            options.QualityFirstSeed, options.QualityFirstSeed + (long)count - 1);
    }

    internal static ClassifierResult TrainOrLoadClassifier(BenchmarkOptions options, string directory, Tensor train, long[] trainLabels,
        Tensor test, long[] testLabels, Action<string> log)
    {
        string path = Path.Combine(directory, "fashion-classifier.bin");
        string resultPath = Path.Combine(directory, "fashion-classifier.json");
        if (File.Exists(path) && File.Exists(resultPath) && Json.Read<ClassifierResult>(resultPath) is { } known && known.Epochs == options.ClassifierEpochs)
        {
            log($"[quality] reusing the classifier in {path} (test accuracy {known.TestAccuracy:P2})");
            return known;
        }
        const int batch = 128;
        using var classifier = new ImageClassifier(new ImageClassifierOptions { Seed = 1 });
        var clock = Stopwatch.StartNew();
        // One call per epoch so the accuracy after each epoch is visible; each call starts a fresh optimiser.
        for (int epoch = 1; epoch <= options.ClassifierEpochs; epoch++)
        {
            double loss = classifier.Train(train, trainLabels, epochs: 1, batchSize: batch);
            log($"[quality] classifier epoch {epoch}: loss {loss:F4}, test accuracy {classifier.Accuracy(test, testLabels):P2} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        double seconds = clock.Elapsed.TotalSeconds;
        var result = new ClassifierResult(options.ClassifierEpochs, batch, classifier.Accuracy(test, testLabels), seconds, path);
        classifier.Save(path);
        Json.Write(resultPath, result);
        return result;
    }

    private static Tensor Generate(DiffusionModel model, long[] seeds, long[] classes, double guidance)
    {
        const int batch = 100;
        var options = Sampling with { GuidanceScale = guidance };
        var parts = new List<Tensor>();
        try
        {
            for (int start = 0; start < seeds.Length; start += batch)
            {
                int size = Math.Min(batch, seeds.Length - start);
                using var labels = tensor(classes.AsSpan(start, size).ToArray());
                using var condition = ConditionBatch.Classes(labels);
                parts.Add(model.Generate(options, seeds.AsSpan(start, size).ToArray(), condition: condition));
            }
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }
}
