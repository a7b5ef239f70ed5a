namespace Microsoft.ML.Diffusion.Evaluation;

/// <summary>How close a set of generated images is to the real ones, in a feature extractor's space.</summary>
/// <param name="FrechetDistance">Fréchet distance between the two sets' feature Gaussians (lower is better).</param>
/// <param name="Precision">Fraction of generated images inside the real images' feature manifold.</param>
/// <param name="Recall">Fraction of real images inside the generated images' feature manifold.</param>
/// <param name="ClassAccuracy">Fraction of generated images the classifier assigns to their intended class; null when not asked for.</param>
/// <param name="RealCount">Number of real images.</param>
/// <param name="GeneratedCount">Number of generated images.</param>
public sealed record SampleQualityReport(double FrechetDistance, double Precision, double Recall, double? ClassAccuracy, long RealCount, long GeneratedCount);
