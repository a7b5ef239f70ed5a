namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// A UNet described in the library's terms — levels, residual blocks per level, attention resolutions — from which
/// <see cref="NoisePredictors.Create"/> builds diffusers' network of that shape: <c>UNet2DModel</c> for unconditional
/// and class-conditional models (computing what the library's first UNet of these settings did, so its files and
/// training states still load), <c>UNet2DConditionModel</c> over the library's condition encoder for text and vector
/// conditions. The model then records the diffusers network's own options.
/// </summary>
public sealed record UNetOptions : NoisePredictorOptions
{
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

    /// <inheritdoc/>
    public override IReadOnlyList<Conditioning.ConditionKind> SupportedConditions =>
        [Conditioning.ConditionKind.None, Conditioning.ConditionKind.Class, Conditioning.ConditionKind.Vector, Conditioning.ConditionKind.Text];

    /// <summary>Channels per level, e.g. (32, 64, 64).</summary>
    public int[] LevelChannels() => ChannelMultipliers.Select(m => BaseChannels * m).ToArray();

    /// <summary>Checks that the network can be built for this image size; throws naming the bad setting.</summary>
    public override void Validate()
    {
        base.Validate();
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
        var sizes = Enumerable.Range(0, ChannelMultipliers.Length).Select(i => ImageSize >> i).ToHashSet();
        foreach (int r in AttentionResolutions ?? [])
            if (!sizes.Contains(r)) throw new ArgumentException($"Attention resolution {r} is not one of the feature-map sizes ({string.Join(", ", sizes)}).", nameof(AttentionResolutions));
    }
}
