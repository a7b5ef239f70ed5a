using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Conditioning;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The configuration of a diffusers <c>UNet2DConditionModel</c> as a noise predictor's options: its <c>config.json</c>
/// as read or written, with the image (or latent) shape and the condition it implies. A prompt condition is Stable
/// Diffusion's (the text model's states come from outside); a text or vector condition is encoded by the library's own
/// <see cref="ConditionContextEncoder"/>, trained with the UNet, whose width is the UNet's cross_attention_dim.
/// </summary>
internal sealed record UNet2DConditionOptions : NoisePredictorOptions
{
    /// <summary>The UNet's <c>config.json</c>, as diffusers wrote it.</summary>
    public string DiffusersConfig { get; init; } = "{}";

    [JsonIgnore]
    public UNet2DConditionModelConfig Config => UNet2DConditionModelConfig.Read(DiffusersConfig, "the UNet's config");

    /// <inheritdoc/>
    public override IReadOnlyList<ConditionKind> SupportedConditions => [ConditionKind.Prompt, ConditionKind.Text, ConditionKind.Vector];

    /// <summary>The options of a UNet with <paramref name="config"/>, read from <paramref name="json"/>; prompts of up to <paramref name="maxTokens"/> positions.</summary>
    public static UNet2DConditionOptions From(string json, UNet2DConditionModelConfig config, int maxTokens) => new()
    {
        DiffusersConfig = json,
        ImageChannels = config.InChannels,
        ImageSize = config.SampleSize ?? 64,
        Condition = new ConditioningOptions { Kind = ConditionKind.Prompt, TextWidth = config.CrossAttentionDim, MaxTokens = maxTokens },
    };

    /// <summary>The options of a UNet with <paramref name="config"/> reading the library's encoding of <paramref name="condition"/> (text or vector).</summary>
    public static UNet2DConditionOptions Encoded(UNet2DConditionModelConfig config, ConditioningOptions condition) => new()
    {
        DiffusersConfig = config.ToJson(),
        ImageChannels = config.InChannels,
        ImageSize = config.SampleSize ?? throw new ArgumentException("The UNet's sample_size must be set.", nameof(config)),
        Condition = condition,
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        var config = Config;   // throws naming a field the library cannot build
        if (Condition.Kind is ConditionKind.Text or ConditionKind.Vector)
        {
            if (config.CrossAttentionDim != Condition.TextWidth)
                throw new ArgumentException($"The UNet's cross_attention_dim ({config.CrossAttentionDim}) must be the condition encoder's width (TextWidth {Condition.TextWidth}).", nameof(Condition));
            if (config.InChannels != ImageChannels || config.OutChannels != ImageChannels)
                throw new ArgumentException($"The UNet takes {config.InChannels} and returns {config.OutChannels} channels; images have {ImageChannels}.", nameof(ImageChannels));
            if (ImageSize % (1 << (config.Levels - 1)) != 0)
                throw new ArgumentException($"ImageSize {ImageSize} must be divisible by {1 << (config.Levels - 1)} so that {config.Levels} levels can halve it exactly.", nameof(ImageSize));
        }
    }
}
