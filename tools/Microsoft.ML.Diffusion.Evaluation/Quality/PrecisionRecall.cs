using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Evaluation;

/// <summary>
/// Improved precision and recall (Kynkäänniemi et al. 2019) in a feature space. Each set's manifold is the
/// union of balls around its points, each as wide as the distance to its k-th nearest neighbour in the same
/// set. Precision is the fraction of generated points inside the real manifold (are samples realistic?);
/// recall is the fraction of real points inside the generated manifold (do samples cover the data?).
/// </summary>
public static class PrecisionRecall
{
    /// <summary>Precision and recall of <paramref name="generated"/> (M, D) against <paramref name="real"/> (N, D).</summary>
    /// <param name="real">Features of real images.</param>
    /// <param name="generated">Features of generated images.</param>
    /// <param name="k">The neighbour that sets each ball's radius (3 in the paper); each set needs more than k points.</param>
    /// <param name="chunk">Rows per block of the pairwise-distance computation (bounds memory at chunk × max(N, M)).</param>
    public static (double Precision, double Recall) Compute(Tensor real, Tensor generated, int k = 3, int chunk = 1024)
    {
        long n = FeatureStatistics.CheckFeatures(real, nameof(real));
        long m = FeatureStatistics.CheckFeatures(generated, nameof(generated));
        if (real.shape[1] != generated.shape[1])
            throw new ArgumentException($"The feature sets have different dimensions ({real.shape[1]} and {generated.shape[1]}).", nameof(generated));
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunk, 1);
        if (n <= k || m <= k)
            throw new ArgumentException($"Each set needs more than k = {k} feature vectors (real {n}, generated {m}).");
        using var scope = NewDisposeScope();
        var r = real.detach().to(ScalarType.Float32, CPU);
        var g = generated.detach().to(ScalarType.Float32, CPU);
        var realRadii = KthNeighbourDistances(r, k, chunk);
        var generatedRadii = KthNeighbourDistances(g, k, chunk);
        double precision = FractionInside(g, r, realRadii, chunk);
        double recall = FractionInside(r, g, generatedRadii, chunk);
        return (precision, recall);
    }

    // Distance from each point to its k-th nearest other point of the same set.
    private static Tensor KthNeighbourDistances(Tensor points, int k, int chunk)
    {
        var parts = new List<Tensor>();
        for (long start = 0; start < points.shape[0]; start += chunk)
        {
            var rows = points.narrow(0, start, Math.Min(chunk, points.shape[0] - start));
            var d = cdist(rows, points);
            // The smallest distance is the point itself (0); the k-th neighbour is the (k+1)-th smallest.
            parts.Add(d.topk(k + 1, dim: 1, largest: false).values.select(1, k));
        }
        return cat(parts, 0);
    }

    // Fraction of queries within the ball of at least one manifold point.
    private static double FractionInside(Tensor queries, Tensor manifold, Tensor radii, int chunk)
    {
        long inside = 0;
        for (long start = 0; start < queries.shape[0]; start += chunk)
        {
            using var blockScope = NewDisposeScope();
            var rows = queries.narrow(0, start, Math.Min(chunk, queries.shape[0] - start));
            var d = cdist(rows, manifold);
            inside += (d <= radii.unsqueeze(0)).any(1).sum().item<long>();
        }
        return (double)inside / queries.shape[0];
    }
}
