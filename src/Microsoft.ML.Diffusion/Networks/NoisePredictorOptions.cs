using Microsoft.ML.Diffusion.Conditioning;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The configuration a <see cref="NoisePredictor"/> is built from: the image shape, the condition, and the
/// network's own settings in a derived record. It is saved as JSON with every model, under the name the type
/// is registered with in <see cref="NoisePredictors"/>, so the network can be rebuilt around its weights.
/// </summary>
[System.Text.Json.Serialization.JsonConverter(typeof(NoisePredictorOptionsJsonConverter))]
public abstract record NoisePredictorOptions
{
    /// <summary>Image channels: 1 (grey), 3 (RGB) or 4 (RGBA).</summary>
    public int ImageChannels { get; init; } = 1;

    /// <summary>Height and width of the (square) images.</summary>
    public int ImageSize { get; init; } = 28;

    /// <summary>The condition the network takes besides the image and the step (none by default).</summary>
    public ConditioningOptions Condition { get; init; } = new();

    /// <summary>The condition kinds this kind of network can take.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public virtual IReadOnlyList<ConditionKind> SupportedConditions => [ConditionKind.None];

    /// <summary>Image shape (C, H, W).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public long[] ImageShape => [ImageChannels, ImageSize, ImageSize];

    /// <summary>The configuration as a model file stores it: JSON with the registered kind's name under "Type".</summary>
    public string ToJson() => System.Text.Json.JsonSerializer.Serialize(this, GetType(), Storage.DiffusionJson.Options);

    /// <summary>Checks that the network can be built; throws naming the bad setting.</summary>
    public virtual void Validate()
    {
        if (ImageChannels is < 1 or > 4) throw new ArgumentOutOfRangeException(nameof(ImageChannels), ImageChannels, "Images must have 1 to 4 channels.");
        if (ImageSize < 4) throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, "Images must be at least 4×4.");
        (Condition ?? throw new ArgumentNullException(nameof(Condition))).Validate();
        if (!SupportedConditions.Contains(Condition.Kind))
            throw new ArgumentException($"This network ({GetType().Name}) cannot take a {Condition.Kind} condition; it takes {string.Join(", ", SupportedConditions)}.", nameof(Condition));
    }
}
