namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>The shape and training settings of an <see cref="ImageClassifier"/>.</summary>
public sealed record ImageClassifierOptions
{
    /// <summary>Image channels (1 for grey).</summary>
    public int Channels { get; init; } = 1;

    /// <summary>Image height in pixels (at least 4).</summary>
    public int Height { get; init; } = 28;

    /// <summary>Image width in pixels (at least 4).</summary>
    public int Width { get; init; } = 28;

    /// <summary>Number of classes.</summary>
    public int ClassCount { get; init; } = 10;

    /// <summary>Width of the penultimate layer, the one <see cref="ImageClassifier.Features"/> returns.</summary>
    public int FeatureDim { get; init; } = 128;

    /// <summary>Dropout rate before the last layer (0 for none).</summary>
    public double Dropout { get; init; } = 0.25;

    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = 1e-4;

    /// <summary>Seed of the weight initialisation, the shuffling and dropout.</summary>
    public int Seed { get; init; }

    internal void Validate()
    {
        if (Channels < 1) throw new ArgumentOutOfRangeException(nameof(Channels), Channels, "Channels must be positive.");
        if (Height < 4 || Width < 4) throw new ArgumentOutOfRangeException(nameof(Height), $"Images must be at least 4×4, not {Height}×{Width}.");
        if (ClassCount < 2) throw new ArgumentOutOfRangeException(nameof(ClassCount), ClassCount, "A classifier needs at least 2 classes.");
        if (FeatureDim < 1) throw new ArgumentOutOfRangeException(nameof(FeatureDim), FeatureDim, "FeatureDim must be positive.");
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must be in [0, 1).");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "LearningRate must be positive.");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "WeightDecay must not be negative.");
    }
}
