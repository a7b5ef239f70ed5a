using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Evaluation;

/// <summary>
/// The Fréchet distance between two Gaussians fitted to feature vectors (Heusel et al. 2017; FID when the
/// features come from Inception-v3):
/// d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁^½ Σ₂ Σ₁^½)^½).
/// Zero for identical statistics; lower is better. It is biased upwards for small sets, so compare
/// numbers computed from equally many samples.
/// </summary>
public static class FrechetDistance
{
    /// <summary>The Fréchet distance between the statistics of two feature sets.</summary>
    public static double Compute(FeatureStatistics first, FeatureStatistics second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        if (first.Dimension != second.Dimension)
            throw new ArgumentException($"The feature sets have different dimensions ({first.Dimension} and {second.Dimension}).", nameof(second));
        using var scope = NewDisposeScope();
        var meanTerm = (first.Mean - second.Mean).square().sum().item<double>();
        // Tr((Σ₁^½ Σ₂ Σ₁^½)^½) through symmetric eigendecompositions: both matrices are symmetric PSD, so
        // this is stable where a general matrix square root (scipy's sqrtm) can turn complex.
        var root = SymmetricSqrt(first.Covariance);
        var inner = root.matmul(second.Covariance).matmul(root);
        inner = (inner + inner.t()) / 2;
        var traceRoot = linalg.eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
        double d = meanTerm + first.Covariance.trace().item<double>() + second.Covariance.trace().item<double>() - 2 * traceRoot;
        return Math.Max(d, 0);   // rounding can leave a tiny negative number for identical sets
    }

    /// <summary>The Fréchet distance between two feature sets (N, D) and (M, D).</summary>
    public static double Compute(Tensor firstFeatures, Tensor secondFeatures)
    {
        using var first = FeatureStatistics.From(firstFeatures);
        using var second = FeatureStatistics.From(secondFeatures);
        return Compute(first, second);
    }

    private static Tensor SymmetricSqrt(Tensor matrix)
    {
        var (values, vectors) = linalg.eigh(matrix);
        return vectors.matmul(diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }
}
