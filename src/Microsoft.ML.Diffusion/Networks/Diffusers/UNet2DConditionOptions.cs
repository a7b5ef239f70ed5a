using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Conditioning;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The configuration of a diffusers <c>UNet2DConditionModel</c> (Stable Diffusion's noise predictor) as a noise
/// predictor's options: its <c>config.json</c> as read, with the latent shape and the prompt condition it implies.
/// </summary>
internal sealed record UNet2DConditionOptions : NoisePredictorOptions
{
    /// <summary>The UNet's <c>config.json</c>, as diffusers wrote it.</summary>
    public string DiffusersConfig { get; init; } = "{}";

    [JsonIgnore]
    public UNet2DConditionModelConfig Config => UNet2DConditionModelConfig.Read(DiffusersConfig, "the UNet's config");

    /// <inheritdoc/>
    public override IReadOnlyList<ConditionKind> SupportedConditions => [ConditionKind.Prompt];

    /// <summary>The options of a UNet with <paramref name="config"/>, read from <paramref name="json"/>; prompts of up to <paramref name="maxTokens"/> positions.</summary>
    public static UNet2DConditionOptions From(string json, UNet2DConditionModelConfig config, int maxTokens) => new()
    {
        DiffusersConfig = json,
        ImageChannels = config.InChannels,
        ImageSize = config.SampleSize ?? 64,
        Condition = new ConditioningOptions { Kind = ConditionKind.Prompt, TextWidth = config.CrossAttentionDim, MaxTokens = maxTokens },
    };
}
