using Microsoft.ML.Diffusion.Conditioning;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// A diffusers <c>UNet2DConditionModel</c> as the library's noise predictor: latents (N, C, h, w), timesteps (N) and
/// the prompt's text-encoder states (N, L, D) in, the predicted noise (or v) out. Its weights keep diffusers' names
/// under <c>unet.</c>. Stable Diffusion has no learned null condition: classifier-free guidance passes the negative
/// prompt's states, so a batch marked as dropped is refused.
/// </summary>
internal sealed class UNet2DConditionNoisePredictor : NoisePredictor
{
    /// <summary>The name this network kind is registered under.</summary>
    public const string RegisteredName = "diffusers-unet2d-condition";

    private readonly UNet2DConditionModel unet;

    /// <summary>Wraps <paramref name="network"/> (loaded weights), or builds one with random weights from the options.</summary>
    public UNet2DConditionNoisePredictor(UNet2DConditionOptions options, UNet2DConditionModel? network = null)
        : base(nameof(UNet2DConditionNoisePredictor), options)
    {
        unet = network ?? new UNet2DConditionModel(options.Config);
        RegisterComponents();
    }

    /// <summary>The diffusers network.</summary>
    public UNet2DConditionModel UNet => unet;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor timesteps, ConditionBatch? condition)
    {
        if (condition is null || condition.Kind != ConditionKind.Prompt)
            throw new ArgumentException("A Stable Diffusion UNet needs the prompt's text-encoder states (an empty prompt's for unconditional samples).", nameof(condition));
        if (condition.NullMask is not null)
            throw new ArgumentException("A Stable Diffusion UNet has no learned null condition; guide with the negative (or empty) prompt's states instead.", nameof(condition));
        return unet.forward(x, timesteps, condition.Values);
    }
}
