using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Conditioning;

public class ConditioningTests(ITestOutputHelper output)
{
    private static UNetOptions Network(ConditioningOptions condition) => DiffusionTrainerTests.TinyNetwork with { Condition = condition };

    private static readonly ConditioningOptions TwoClasses = new() { Kind = ConditionKind.Class, ClassCount = 2 };

    [Fact]
    public void ClassConditionalModelDrawsThePromptedClassAndGuidanceHelps()
    {
        // Class = which half of the image the shape sits in (top 0, bottom 1): a property that is
        // unambiguous at 16×16 and easy to measure on samples, unlike disc vs square at 2–5 px radius.
        using var images = SyntheticShapes.Generate(256, 16, seed: 1);
        var labels = HalfClasses(images);
        using var labelTensor = tensor(labels.Select(l => (long)l).ToArray());
        using var conditions = ConditionBatch.Classes(labelTensor);
        using var trainer = new DiffusionTrainer(Network(TwoClasses), options: DiffusionTrainerTests.FastOptions(3) with { ConditionDropout = 0.15 }, device: CPU);
        trainer.Train(images, 500, conditions: conditions);
        using var model = trainer.ToModel();

        // Measure: the half of each sample that holds the centroid of its bright pixels, against the prompted class.
        double Accuracy(double guidance)
        {
            var seeds = Enumerable.Range(0, 48).Select(i => (long)i).ToArray();
            var prompted = seeds.Select(s => s % 2).ToArray();
            using var prompt = ConditionBatch.Classes(tensor(prompted));
            using var samples = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 20, GuidanceScale = guidance }, seeds, condition: prompt);
            return HalfClasses(samples).Zip(prompted).Count(p => p.First == p.Second) / 48.0;
        }
        double unguided = Accuracy(0), conditional = Accuracy(1), guided = Accuracy(3);
        output.WriteLine($"agreement with the prompted half: guidance 0 → {unguided:P0}, 1 → {conditional:P0}, 3 → {guided:P0}");
        // 48 samples: by chance (p = ½) 41 or more agree with probability < 0.0001%.
        Assert.True(guided >= 0.85, $"with guidance 3, {guided:P0} of samples have the prompted class");
        Assert.True(guided >= unguided + 0.3, $"guidance should beat ignoring the condition ({unguided:P0} → {guided:P0})");
    }

    [Fact]
    public void GuidanceCombinesBothPassesAsTheFormulaSays()
    {
        manual_seed(4);
        using var net = NoisePredictors.Create(Network(TwoClasses));
        using (no_grad()) foreach (var p in net.parameters()) p.normal_(0, 0.05);
        using var model = new DiffusionModel(net, new Microsoft.ML.Diffusion.Schedules.NoiseScheduleOptions(), Microsoft.ML.Diffusion.Process.PredictionType.Epsilon);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn(3, 1, 16, 16);
        var t = tensor(new long[] { 5, 500, 900 });
        using var condition = ConditionBatch.Classes(tensor(new long[] { 0, 1, 1 }));
        var conditional = net.Forward(x, t, condition);
        var unconditional = net.Forward(x, t, null);
        var guided = model.AsDenoiser(condition, 4.0)(x, t);
        var expected = unconditional + 4.0 * (conditional - unconditional);
        Assert.True(guided.allclose(expected, rtol: 1e-4, atol: 1e-5));
        Assert.False(conditional.allclose(unconditional, rtol: 1e-3, atol: 1e-4));
        Assert.True(model.AsDenoiser(condition, 1.0)(x, t).allclose(conditional));
        Assert.True(model.AsDenoiser(condition, 0.0)(x, t).allclose(unconditional));
    }

    [Fact]
    public void TextAndVectorConditionsReachTheOutput()
    {
        foreach (var condition in new[]
        {
            new ConditioningOptions { Kind = ConditionKind.Text, VocabularySize = 20, MaxTokens = 6, TextWidth = 32, TextHeads = 4, TextLayers = 1 },
            new ConditioningOptions { Kind = ConditionKind.Vector, VectorSize = 5 },
        })
        {
            manual_seed(5);
            using var net = NoisePredictors.Create(Network(condition));
            using (no_grad()) foreach (var p in net.parameters()) p.normal_(0, 0.05);
            net.eval();
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var x = randn(2, 1, 16, 16).expand(2, 1, 16, 16).contiguous();
            var t = tensor(new long[] { 300, 300 });
            using var batch = condition.Kind == ConditionKind.Text
                ? ConditionBatch.Tokens(tensor(new long[,] { { 3, 4, 5, 0, 0, 0 }, { 7, 8, 0, 0, 0, 0 } }))
                : ConditionBatch.Vectors(tensor(new float[,] { { 1, 0, 0, 0, 0 }, { 0, 0, 0, 1, 0 } }));
            var y = net.Forward(x, t, batch);
            Assert.Equal(x.shape, y.shape);
            Assert.True(y.isfinite().all().item<bool>());
            Assert.False(y[0].allclose(y[1], rtol: 1e-4, atol: 1e-5), $"{condition.Kind}: different conditions must give different outputs");
        }
    }

    [Fact]
    public void TextConditionalTrainingLowersTheLoss()
    {
        var condition = new ConditioningOptions { Kind = ConditionKind.Text, VocabularySize = 6, MaxTokens = 3, TextWidth = 32, TextHeads = 4, TextLayers = 1 };
        using var images = SyntheticShapes.Generate(128, 16, seed: 2, out var labels);
        // "a disc" → [2, 3], "a square" → [2, 4]
        var tokens = new long[labels.Length, 3];
        for (int i = 0; i < labels.Length; i++) { tokens[i, 0] = 2; tokens[i, 1] = labels[i] == 0 ? 3 : 4; }
        using var prompts = ConditionBatch.Tokens(tensor(tokens));
        using var trainer = new DiffusionTrainer(Network(condition), options: DiffusionTrainerTests.FastOptions(6), device: CPU);
        var reports = new List<TrainingProgress>();
        trainer.Train(images, 120, reports.Add, reportEvery: 40, conditions: prompts);
        Assert.True(reports[^1].Loss < 0.6 * reports[0].Loss, $"loss {reports[0].Loss:F4} → {reports[^1].Loss:F4}");
        using var model = trainer.ToModel();
        using var sampleTokens = ConditionBatch.Tokens(tensor(new long[,] { { 2, 3, 0 }, { 2, 4, 0 } }));
        using var samples = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 5, GuidanceScale = 2 }, [1L, 2L], condition: sampleTokens);
        Assert.True(samples.isfinite().all().item<bool>());
    }

    [Fact]
    public void BadConditionsAreRejectedClearly()
    {
        using var images = SyntheticShapes.Generate(8, 16);
        using var trainer = new DiffusionTrainer(Network(TwoClasses), options: DiffusionTrainerTests.FastOptions(0), device: CPU);
        Assert.Contains("pass one condition per training image", Assert.Throws<ArgumentException>(() => trainer.Train(images, 1)).Message);
        using var unknownClass = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 0, 1, 0, 1, 0 }));
        Assert.Contains("knows 2 classes", Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Train(images, 1, conditions: unknownClass)).Message);
        using var tooFew = ConditionBatch.Classes(tensor(new long[] { 0, 1 }));
        Assert.Contains("2 conditions for 8 images", Assert.Throws<ArgumentException>(() => trainer.Train(images, 1, conditions: tooFew)).Message);

        using var plain = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, options: DiffusionTrainerTests.FastOptions(0), device: CPU);
        using var labels = ConditionBatch.Classes(zeros(8, dtype: int64));
        Assert.Contains("unconditional", Assert.Throws<ArgumentException>(() => plain.Train(images, 1, conditions: labels)).Message);
        using var model = plain.ToModel();
        using var one = ConditionBatch.Classes(zeros(1, dtype: int64));
        Assert.Contains("unconditional", Assert.Throws<ArgumentException>(() => model.Generate(new GenerationOptions(), [1L], condition: one)).Message);
    }

    // 0 when the centroid of an image's bright pixels is in its top half, 1 in the bottom half, −1 when it has none.
    internal static int[] HalfClasses(Tensor images)
    {
        var pixels = images.cpu().data<float>().ToArray();
        int n = (int)images.shape[0], h = (int)images.shape[2], w = (int)images.shape[3];
        var result = new int[n];
        for (int i = 0; i < n; i++)
        {
            double sum = 0, count = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    if (pixels[i * h * w + y * w + x] > 0) { sum += y + 0.5; count++; }
            result[i] = count == 0 ? -1 : sum / count < h / 2.0 ? 0 : 1;
        }
        return result;
    }

    // 0 (disc) or 1 (square) per image, from the fraction of its bounding box the shape fills.
    internal static int[] ShapeClasses(Tensor images)
    {
        var pixels = images.cpu().data<float>().ToArray();
        int n = (int)images.shape[0], h = (int)images.shape[2], w = (int)images.shape[3];
        var result = new int[n];
        for (int i = 0; i < n; i++)
        {
            int minX = w, minY = h, maxX = -1, maxY = -1, area = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    if (pixels[i * h * w + y * w + x] > 0)
                    {
                        area++;
                        minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
                        minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
                    }
            double box = maxX < 0 ? 1 : (maxX - minX + 1.0) * (maxY - minY + 1.0);
            result[i] = area / box > 0.9 ? 1 : 0;
        }
        return result;
    }
}
