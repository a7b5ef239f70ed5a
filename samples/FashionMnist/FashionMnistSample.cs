using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>How the sample conditions the model on the class.</summary>
public enum FashionCondition
{
    /// <summary>The integer label column, as a learned class embedding.</summary>
    Class,

    /// <summary>The prompt text ("an ankle boot"), tokenized by ML.NET and read by a small text encoder.</summary>
    Text,
}

/// <summary>Settings of <see cref="FashionMnistSample.Run"/>; the defaults are the real run.</summary>
public sealed record FashionMnistSampleOptions
{
    public FashionCondition Condition { get; init; } = FashionCondition.Class;
    public int Steps { get; init; } = 1500;            // about 17 minutes on 2 CPU cores
    public int? MaxTrainingImages { get; init; }       // null: all 60,000
    public int BaseChannels { get; init; } = 32;
    public int[] ChannelMultipliers { get; init; } = [1, 2, 2];
    public int SamplesPerClass { get; init; } = 8;
    public double[] GuidanceScales { get; init; } = [1, 3];
    public bool Evaluate { get; init; }                // train a classifier and score the samples (≈ 2 extra minutes)
    public int ClassifierEpochs { get; init; } = 3;
}

/// <summary>
/// Class- or text-conditional Fashion-MNIST with ML.NET: the IDX files as a data view, TrainDiffusion with
/// a condition column, a saved zip, and DiffusionGenerate from a fresh context with one prompt per row.
/// </summary>
public static class FashionMnistSample
{
    /// <summary>What the sample wrote and measured.</summary>
    public sealed record Result(string OutputFolder, string ModelZip, IReadOnlyList<string> Grids, string RealGrid, double TrainingSeconds,
        double? ClassifierAccuracy, IReadOnlyDictionary<double, double> ClassAccuracyByGuidance);

    public static Result Run(string outDir, FashionMnistSampleOptions options, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        if (!FashionMnist.IsAvailable(out string reason)) throw new FileNotFoundException(reason);
        var clock = Stopwatch.StartNew();

        // 1. Train. The data view has Pixels (1×28×28, 0–255), Label (0–9), ClassName and Prompt.
        var ml = new MLContext(seed: 1);
        var data = FashionMnist.LoadDataView(ml, FashionMnistSplit.Train, maxItems: options.MaxTrainingImages);
        var training = new DiffusionTrainingOptions
        {
            ImageColumnName = nameof(FashionMnistRow.Pixels), ImageChannels = 1, PixelRange = PixelRange.Bytes,
            BaseChannels = options.BaseChannels, ChannelMultipliers = options.ChannelMultipliers,
            AttentionResolutions = [28 >> (options.ChannelMultipliers.Length - 1)],
            TrainingSteps = options.Steps, BatchSize = 64, LearningRate = 5e-4, WarmupSteps = Math.Min(200, options.Steps / 4),
            EmaDecay = options.Steps >= 1000 ? 0.998 : 0.99, ConditionDropout = 0.1, Seed = 1,
            ReportEvery = Math.Max(1, Math.Min(100, options.Steps / 10)),
            Progress = p => log.WriteLine($"  step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}, {p.StepsPerSecond:F2} steps/s"),
        };
        IEstimator<ITransformer> pipeline;
        if (options.Condition == FashionCondition.Class)
        {
            training.ConditionColumnName = nameof(FashionMnistRow.Label);   // integers 0–9
            training.ClassCount = FashionMnist.ClassCount;
            pipeline = ml.Transforms.TrainDiffusion(training);
        }
        else
        {
            // ML.NET's own text stages turn the prompt into token keys; they are saved in the same zip.
            training.ConditionColumnName = "Tokens";
            training.MaxTokens = 8;
            pipeline = ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(FashionMnistRow.Prompt))
                .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
                .Append(ml.Transforms.TrainDiffusion(training));
        }
        log.WriteLine($"Training a {options.Condition.ToString().ToLowerInvariant()}-conditional model for {options.Steps} steps on Fashion-MNIST...");
        var model = pipeline.Fit(data);
        double trainingSeconds = clock.Elapsed.TotalSeconds;
        string modelZip = Path.Combine(outDir, $"fashion-{options.Condition.ToString().ToLowerInvariant()}.zip");
        ml.Model.SaveAtomically(model, data.Schema, modelZip);
        log.WriteLine($"Trained in {trainingSeconds:F0} s; saved {modelZip}");

        // 2. Generate from the zip in a fresh context: rows are (class or prompt, seed); row i is class i % 10.
        var app = new MLContext(seed: 2);
        var loaded = app.Model.Load(modelZip, out _);
        int count = options.SamplesPerClass * FashionMnist.ClassCount;
        var requests = app.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => new Request
        {
            Label = i % FashionMnist.ClassCount, Prompt = FashionMnist.Prompts[i % FashionMnist.ClassCount], Seed = 1000 + i,
        }).ToList());
        var intended = Enumerable.Range(0, count).Select(i => (long)(i % FashionMnist.ClassCount)).ToArray();
        var conditionColumn = options.Condition == FashionCondition.Class ? nameof(Request.Label) : "Tokens";

        ImageClassifier? classifier = null;
        double? classifierAccuracy = null;
        if (options.Evaluate)
        {
            classifier = TrainClassifier(options.ClassifierEpochs, log, out double accuracy);
            classifierAccuracy = accuracy;
        }
        var grids = new List<string>();
        var accuracies = new Dictionary<double, double>();
        try
        {
            foreach (double w in options.GuidanceScales)
            {
                var generate = app.Transforms.DiffusionGenerate(loaded, new DiffusionGenerationOptions
                {
                    OutputColumnName = "Generated", SeedColumnName = nameof(Request.Seed), ConditionColumnName = conditionColumn,
                    Generation = { GuidanceScale = w, Sampler = SamplerName.DpmSolverPlusPlus, Steps = 20 }, OutputKind = GeneratedOutputKind.Pixels,
                });
                // The loaded chain tokenizes the prompts (text) or passes rows through (class); generation follows it.
                var prepared = loaded.Transform(requests);
                var generated = generate.Fit(prepared).Transform(prepared);
                var pixels = generated.GetColumn<VBuffer<float>>("Generated").Select(v => v.DenseValues().ToArray()).ToArray();
                using var images = PixelRows.ToTensor(pixels, 1, FashionMnist.ImageSize, FashionMnist.ImageSize);
                string grid = Path.Combine(outDir, $"generated-guidance-{w:0.#}.png");
                ClassInterleavedImages.SaveGrid(images, FashionMnist.ClassCount, options.SamplesPerClass, grid);
                grids.Add(grid);
                string score = "";
                if (classifier is not null)
                {
                    accuracies[w] = classifier.Accuracy(images, intended);
                    score = $"; the classifier assigns {accuracies[w]:P1} to the prompted class";
                }
                log.WriteLine($"Guidance {w}: {count} images → {grid}{score}");
            }
        }
        finally
        {
            classifier?.Dispose();
        }

        string realGrid = Path.Combine(outDir, "real-test-images.png");
        using (var test = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] labels))
        {
            // The first SamplesPerClass test images of each class, ordered like the generated rows (row i is class i % 10).
            using var real = ClassInterleavedImages.Select(test, labels, FashionMnist.ClassCount, options.SamplesPerClass);
            ClassInterleavedImages.SaveGrid(real, FashionMnist.ClassCount, options.SamplesPerClass, realGrid);
        }
        log.WriteLine($"Rows of each grid: {string.Join(", ", FashionMnist.ClassNames)} ({clock.Elapsed.TotalSeconds:F0} s in all)");
        return new Result(outDir, modelZip, grids, realGrid, trainingSeconds, classifierAccuracy, accuracies);
    }

    private static ImageClassifier TrainClassifier(int epochs, TextWriter log, out double accuracy)
    {
        using var train = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] trainLabels);
        using var test = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] testLabels);
        var classifier = new ImageClassifier(new ImageClassifierOptions { Seed = 1 });
        var clock = Stopwatch.StartNew();
        classifier.Train(train, trainLabels, epochs, batchSize: 128);
        accuracy = classifier.Accuracy(test, testLabels);
        log.WriteLine($"Classifier: {epochs} epochs in {clock.Elapsed.TotalSeconds:F0} s, test accuracy {accuracy:P2}");
        return classifier;
    }

    private sealed class Request
    {
        public int Label { get; set; }
        public string Prompt { get; set; } = "";
        public int Seed { get; set; }
    }
}
