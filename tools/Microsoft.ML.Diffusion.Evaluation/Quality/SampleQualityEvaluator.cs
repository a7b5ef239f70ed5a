using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Evaluation;

/// <summary>
/// Scores generated images against a fixed set of real ones in the feature space of any feature extractor:
/// Fréchet distance, precision and recall, and (with a classifier) the fraction of images of the intended
/// class. The real images' features are computed once, so scoring several generated sets (checkpoints,
/// guidance scales) costs only their own features.
/// </summary>
public sealed class SampleQualityEvaluator : IDisposable
{
    private readonly Func<Tensor, Tensor> _features;
    private readonly Func<Tensor, long[]>? _classify;
    private readonly Tensor _realFeatures;
    private readonly FeatureStatistics _realStatistics;
    private readonly int _neighbours;

    /// <summary>An evaluator over <paramref name="realImages"/>.</summary>
    /// <param name="featureExtractor">Maps images (N, C, H, W) to features (N, D).</param>
    /// <param name="realImages">The reference images, in the range the extractor expects.</param>
    /// <param name="classify">Optional classifier for <see cref="SampleQualityReport.ClassAccuracy"/>.</param>
    /// <param name="neighbours">k of the k-nearest-neighbour manifolds of precision and recall.</param>
    public SampleQualityEvaluator(Func<Tensor, Tensor> featureExtractor, Tensor realImages, Func<Tensor, long[]>? classify = null, int neighbours = 3)
    {
        ArgumentNullException.ThrowIfNull(featureExtractor);
        CheckImages(realImages, nameof(realImages));
        ArgumentOutOfRangeException.ThrowIfLessThan(neighbours, 1);
        _features = featureExtractor;
        _classify = classify;
        _neighbours = neighbours;
        _realFeatures = ExtractChecked(realImages, nameof(realImages));
        _realStatistics = FeatureStatistics.From(_realFeatures);
        RealImageShape = realImages.shape.Skip(1).ToArray();
    }

    /// <summary>An evaluator whose features come from any TorchSharp module, run in eval mode without gradients, in batches.</summary>
    public static SampleQualityEvaluator FromModule(nn.Module<Tensor, Tensor> featureExtractor, Tensor realImages, int batchSize = 256, int neighbours = 3)
    {
        ArgumentNullException.ThrowIfNull(featureExtractor);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        return new SampleQualityEvaluator(images => RunModule(featureExtractor, images, batchSize), realImages, null, neighbours);
    }

    /// <summary>Shape (C, H, W) of the real images; generated images must match it.</summary>
    public long[] RealImageShape { get; }

    /// <summary>Number of real images.</summary>
    public long RealCount => _realStatistics.Count;

    /// <summary>Scores <paramref name="generatedImages"/>; with <paramref name="intendedClasses"/> (one per image) also the class accuracy.</summary>
    public SampleQualityReport Evaluate(Tensor generatedImages, IReadOnlyList<long>? intendedClasses = null)
    {
        CheckImages(generatedImages, nameof(generatedImages));
        if (!generatedImages.shape.Skip(1).SequenceEqual(RealImageShape))
            throw new ArgumentException($"Generated images have shape ({string.Join(", ", generatedImages.shape.Skip(1))}) but the real ones ({string.Join(", ", RealImageShape)}).", nameof(generatedImages));
        if (intendedClasses is not null)
        {
            if (_classify is null) throw new InvalidOperationException("Class accuracy needs a classifier; pass a classify function when creating the evaluator.");
            if (intendedClasses.Count != generatedImages.shape[0])
                throw new ArgumentException($"There are {generatedImages.shape[0]} images but {intendedClasses.Count} intended classes.", nameof(intendedClasses));
        }
        using var features = ExtractChecked(generatedImages, nameof(generatedImages));
        using var statistics = FeatureStatistics.From(features);
        double fd = FrechetDistance.Compute(_realStatistics, statistics);
        var (precision, recall) = PrecisionRecall.Compute(_realFeatures, features, _neighbours);
        double? accuracy = null;
        if (intendedClasses is not null)
        {
            var predicted = _classify!(generatedImages);
            int correct = 0;
            for (int i = 0; i < predicted.Length; i++) if (predicted[i] == intendedClasses[i]) correct++;
            accuracy = (double)correct / predicted.Length;
        }
        return new SampleQualityReport(fd, precision, recall, accuracy, RealCount, generatedImages.shape[0]);
    }

    private Tensor ExtractChecked(Tensor images, string name)
    {
        var features = _features(images) ?? throw new InvalidOperationException("The feature extractor returned null.");
        if (features.dim() != 2 || features.shape[0] != images.shape[0])
        {
            string shape = string.Join(", ", features.shape);
            features.Dispose();
            throw new InvalidOperationException($"The feature extractor must return one feature vector per image, (N, D) with N = {images.shape[0]}; it returned ({shape}).");
        }
        try
        {
            FeatureStatistics.CheckFeatures(features, name);
        }
        catch
        {
            features.Dispose();
            throw;
        }
        return features;
    }

    private static void CheckImages(Tensor images, string name)
    {
        ArgumentNullException.ThrowIfNull(images, name);
        if (images.dim() != 4) throw new ArgumentException($"Images must be (N, C, H, W), got shape ({string.Join(", ", images.shape)}).", name);
        if (images.shape[0] < 2) throw new ArgumentException($"At least 2 images are needed, got {images.shape[0]}.", name);
    }

    private static Tensor RunModule(nn.Module<Tensor, Tensor> module, Tensor images, int batchSize)
    {
        var device = module.parameters().FirstOrDefault()?.device ?? images.device;
        bool wasTraining = module.training;
        module.eval();
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var parts = new List<Tensor>();
            for (long start = 0; start < images.shape[0]; start += batchSize)
            {
                var batch = images.narrow(0, start, Math.Min(batchSize, images.shape[0] - start)).to(device);
                parts.Add(module.forward(batch).flatten(1).cpu());
            }
            return cat(parts, 0).MoveToOuterDisposeScope();
        }
        finally
        {
            if (wasTraining) module.train();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _realFeatures.Dispose();
        _realStatistics.Dispose();
    }
}
