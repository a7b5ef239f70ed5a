namespace Microsoft.ML.Diffusion.Networks;

/// <summary>The shape of a <see cref="UNetNoisePredictor"/>; saved with every checkpoint so it can be rebuilt.</summary>
public sealed record UNetOptions
{
    /// <summary>Image channels: 1 (grey), 3 (RGB) or 4 (RGBA).</summary>
    public int ImageChannels { get; init; } = 1;

    /// <summary>Height and width of the (square) images, e.g. 28, 32 or 64.</summary>
    public int ImageSize { get; init; } = 28;

    /// <summary>Channels of the first level; each level has <c>BaseChannels × ChannelMultipliers[i]</c>.</summary>
    public int BaseChannels { get; init; } = 32;

    /// <summary>Channel multiplier per resolution level; the image is halved between levels.</summary>
    public int[] ChannelMultipliers { get; init; } = [1, 2, 2];

    /// <summary>Residual blocks per level on the way down (the way up has one more, for the extra skip).</summary>
    public int ResidualBlocksPerLevel { get; init; } = 1;

    /// <summary>Feature-map sizes (in pixels) at which self-attention follows each residual block.</summary>
    public int[] AttentionResolutions { get; init; } = [7];

    /// <summary>Attention heads in each self-attention layer.</summary>
    public int AttentionHeads { get; init; } = 1;

    /// <summary>GroupNorm groups; must divide every level's channel count.</summary>
    public int NormGroups { get; init; } = 8;

    /// <summary>Dropout inside residual blocks (DDPM used 0.1 on CIFAR-10).</summary>
    public double Dropout { get; init; }

    /// <summary>The condition the network takes besides the image and the step (none by default).</summary>
    public Conditioning.ConditioningOptions Condition { get; init; } = new();

    /// <summary>Channels per level, e.g. (32, 64, 64).</summary>
    public int[] LevelChannels() => ChannelMultipliers.Select(m => BaseChannels * m).ToArray();

    /// <summary>Checks that the network can be built for this image size; throws naming the bad setting.</summary>
    public void Validate()
    {
        if (ImageChannels is < 1 or > 4) throw new ArgumentOutOfRangeException(nameof(ImageChannels), ImageChannels, "Images must have 1 to 4 channels.");
        if (ImageSize < 4) throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, "Images must be at least 4×4.");
        if (BaseChannels < 1) throw new ArgumentOutOfRangeException(nameof(BaseChannels), BaseChannels, "BaseChannels must be positive.");
        if (ChannelMultipliers is null || ChannelMultipliers.Length == 0 || ChannelMultipliers.Any(m => m < 1))
            throw new ArgumentException("ChannelMultipliers needs at least one positive multiplier.", nameof(ChannelMultipliers));
        if (ResidualBlocksPerLevel < 1) throw new ArgumentOutOfRangeException(nameof(ResidualBlocksPerLevel), ResidualBlocksPerLevel, "Each level needs at least one residual block.");
        if (AttentionHeads < 1) throw new ArgumentOutOfRangeException(nameof(AttentionHeads), AttentionHeads, "AttentionHeads must be positive.");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must lie in [0, 1).");
        int factor = 1 << (ChannelMultipliers.Length - 1);
        if (ImageSize % factor != 0)
            throw new ArgumentException($"ImageSize {ImageSize} must be divisible by {factor} so that {ChannelMultipliers.Length} levels can halve it exactly.", nameof(ImageSize));
        foreach (int c in LevelChannels())
        {
            if (c % NormGroups != 0) throw new ArgumentException($"NormGroups {NormGroups} must divide every level's channel count ({string.Join(", ", LevelChannels())}).", nameof(NormGroups));
            if (c % AttentionHeads != 0) throw new ArgumentException($"AttentionHeads {AttentionHeads} must divide every level's channel count.", nameof(AttentionHeads));
        }
        if (BaseChannels % 2 != 0) throw new ArgumentException("BaseChannels must be even (it is also the sinusoidal embedding width).", nameof(BaseChannels));
        (Condition ?? throw new ArgumentNullException(nameof(Condition))).Validate();
        var sizes = Enumerable.Range(0, ChannelMultipliers.Length).Select(i => ImageSize >> i).ToHashSet();
        foreach (int r in AttentionResolutions ?? [])
            if (!sizes.Contains(r)) throw new ArgumentException($"Attention resolution {r} is not one of the feature-map sizes ({string.Join(", ", sizes)}).", nameof(AttentionResolutions));
    }
}
