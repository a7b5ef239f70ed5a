using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Evaluation;

/// <summary>
/// The mean and covariance of a set of feature vectors, in double precision — what the Fréchet distance
/// compares. Compute the real set's statistics once and reuse them for every generated set.
/// </summary>
public sealed class FeatureStatistics : IDisposable
{
    private FeatureStatistics(Tensor mean, Tensor covariance, long count)
    {
        Mean = mean;
        Covariance = covariance;
        Count = count;
    }

    /// <summary>The mean feature vector (D), float64, on the CPU.</summary>
    public Tensor Mean { get; }

    /// <summary>The unbiased covariance matrix (D, D), float64, on the CPU.</summary>
    public Tensor Covariance { get; }

    /// <summary>Number of feature vectors the statistics were computed from.</summary>
    public long Count { get; }

    /// <summary>Feature dimension D.</summary>
    public long Dimension => Mean.shape[0];

    /// <summary>Statistics of <paramref name="features"/> (N, D) with N ≥ 2; NaN or infinite features are an error.</summary>
    public static FeatureStatistics From(Tensor features)
    {
        long n = CheckFeatures(features, nameof(features));
        if (n < 2) throw new ArgumentException($"Statistics need at least 2 feature vectors, got {n}.", nameof(features));
        using var scope = NewDisposeScope();
        var x = features.detach().to(ScalarType.Float64, CPU);
        var mean = x.mean([0]);
        var centred = x - mean;
        var covariance = centred.t().matmul(centred) / (n - 1);
        return new FeatureStatistics(mean.MoveToOuterDisposeScope(), covariance.MoveToOuterDisposeScope(), n);
    }

    internal static long CheckFeatures(Tensor features, string name)
    {
        ArgumentNullException.ThrowIfNull(features, name);
        if (features.dim() != 2)
            throw new ArgumentException($"Features must be a matrix (N, D), got shape ({string.Join(", ", features.shape)}).", name);
        if (!features.is_floating_point())
            throw new ArgumentException($"Features must be floating point, got {features.dtype}.", name);
        using (var finite = features.isfinite().all())
            if (!finite.item<bool>())
                throw new ArgumentException("Features contain NaN or infinite values (check the images and the feature extractor).", name);
        return features.shape[0];
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Mean.Dispose();
        Covariance.Dispose();
    }
}
