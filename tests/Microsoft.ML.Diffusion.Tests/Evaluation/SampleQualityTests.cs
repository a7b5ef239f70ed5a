using Microsoft.ML.Diffusion.Evaluation;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Evaluation;

public sealed class SampleQualityTests
{
    private static Tensor Normal(long n, long d, int seed, double mean = 0, double std = 1)
        => randn([n, d], dtype: ScalarType.Float64, generator: new Generator((ulong)seed)) * std + mean;

    [Fact]
    public void FrechetDistanceMatchesTheClosedFormForGaussians()
    {
        // N(0, I) vs N(m·1, 4I) in d dims: ‖μ₁−μ₂‖² + d(1 + 4 − 2·2) = d·m² + d.
        const int d = 4;
        using var a = Normal(20000, d, seed: 1);
        using var b = Normal(20000, d, seed: 2, mean: 0.5, std: 2);
        double fd = FrechetDistance.Compute(a, b);
        double expected = d * 0.25 + d;
        Assert.InRange(fd, expected * 0.95, expected * 1.05);
    }

    [Fact]
    public void FrechetDistanceIsZeroForIdenticalSetsAndSymmetric()
    {
        using var a = Normal(500, 8, seed: 3);
        using var b = Normal(500, 8, seed: 4, mean: 1);
        Assert.Equal(0, FrechetDistance.Compute(a, a), 8);
        Assert.Equal(FrechetDistance.Compute(a, b), FrechetDistance.Compute(b, a), 6);
        Assert.InRange(FrechetDistance.Compute(a, b), 6, 10);   // ≈ 8 (mean shift of 1 in 8 dims)
    }

    [Fact]
    public void FrechetDistanceHandlesSingularCovariances()
    {
        // Fewer samples than dimensions and a constant feature: the covariances are singular.
        using var a = Normal(10, 32, seed: 5);
        using var b = Normal(10, 32, seed: 6);
        a[.., 0] = tensor(1.0, ScalarType.Float64);
        double fd = FrechetDistance.Compute(a, b);
        Assert.True(double.IsFinite(fd) && fd > 0, $"FD {fd}");
    }

    [Fact]
    public void PrecisionAndRecallSeparateRealismFromCoverage()
    {
        using var real = Normal(1000, 2, seed: 7);
        using var same = Normal(1000, 2, seed: 8);
        var (p, r) = PrecisionRecall.Compute(real, same);
        Assert.True(p > 0.9 && r > 0.9, $"same distribution: precision {p:F3}, recall {r:F3}");

        // Mode collapse: realistic samples from one small region — high precision, low recall.
        using var collapsed = Normal(1000, 2, seed: 9, mean: 0, std: 0.1);
        (p, r) = PrecisionRecall.Compute(real, collapsed);
        Assert.True(p > 0.9 && r < 0.2, $"collapsed: precision {p:F3}, recall {r:F3}");

        // Far away: nothing realistic, nothing covered.
        using var far = Normal(1000, 2, seed: 10, mean: 50);
        (p, r) = PrecisionRecall.Compute(real, far);
        Assert.Equal(0, p);
        Assert.Equal(0, r);
    }

    [Fact]
    public void EvaluatorAcceptsAnyTorchSharpModuleAndScoresCloserSetsBetter()
    {
        using var extractor = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.Tanh());
        using var real = rand([300, 3, 4, 4], generator: new Generator(11)) * 2 - 1;
        using var similar = rand([300, 3, 4, 4], generator: new Generator(12)) * 2 - 1;
        using var different = (rand([300, 3, 4, 4], generator: new Generator(13)) * 0.2) + 0.7;
        using var evaluator = SampleQualityEvaluator.FromModule(extractor, real, batchSize: 64);

        var good = evaluator.Evaluate(similar);
        var bad = evaluator.Evaluate(different);
        Assert.Equal(300, good.RealCount);
        Assert.Equal(300, good.GeneratedCount);
        Assert.Null(good.ClassAccuracy);
        Assert.True(good.FrechetDistance < bad.FrechetDistance, $"similar {good.FrechetDistance:F3} vs different {bad.FrechetDistance:F3}");
        Assert.True(good.Recall > bad.Recall, $"recall similar {good.Recall:F3} vs different {bad.Recall:F3}");
        Assert.True(extractor.training, "the evaluator must restore the module's training mode");
    }

    [Fact]
    public void ClassAccuracyCountsImagesOfTheIntendedClass()
    {
        // A "classifier" that reads the class from the first pixel's sign.
        using var real = rand([50, 1, 4, 4], generator: new Generator(14)) * 2 - 1;
        using var generated = rand([50, 1, 4, 4], generator: new Generator(15)) * 2 - 1;
        long[] Classify(Tensor images) => (images[.., 0, 0, 0] > 0).to(ScalarType.Int64).data<long>().ToArray();
        using var evaluator = new SampleQualityEvaluator(images => images.flatten(1), real, Classify);
        var truth = Classify(generated);
        Assert.Equal(1.0, evaluator.Evaluate(generated, truth).ClassAccuracy);
        Assert.Equal(0.0, evaluator.Evaluate(generated, truth.Select(c => 1 - c).ToArray()).ClassAccuracy);
    }

    [Fact]
    public void BadInputIsRejectedWithTheCause()
    {
        using var real = rand([20, 1, 4, 4]);
        using var evaluator = new SampleQualityEvaluator(images => images.flatten(1), real);
        using var wrongSize = rand([20, 1, 5, 5]);
        Assert.Contains("shape", Assert.Throws<ArgumentException>(() => evaluator.Evaluate(wrongSize)).Message);
        using var nan = rand([20, 1, 4, 4]);
        nan[3, 0, 1, 1] = tensor(float.NaN);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => evaluator.Evaluate(nan)).Message);
        Assert.Contains("classifier", Assert.Throws<InvalidOperationException>(() => evaluator.Evaluate(real, new long[20])).Message);
        using var one = rand([1, 1, 4, 4]);
        Assert.Contains("At least 2", Assert.Throws<ArgumentException>(() => evaluator.Evaluate(one)).Message);
        Assert.Contains("one feature vector per image", Assert.Throws<InvalidOperationException>(
            () => new SampleQualityEvaluator(images => images.flatten(1)[..1], real)).Message);
        using var a = rand([10, 3]);
        using var b = rand([10, 4]);
        Assert.Contains("dimensions", Assert.Throws<ArgumentException>(() => FrechetDistance.Compute(a, b)).Message);
        Assert.Contains("more than k", Assert.Throws<ArgumentException>(() => PrecisionRecall.Compute(a, a[..3], k: 3)).Message);
    }
}
