using Microsoft.ML.Diffusion.Conditioning;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// A diffusers <c>UNet2DConditionModel</c> as the library's noise predictor: images or latents (N, C, h, w), timesteps
/// (N) and the condition's states (N, L, D) for cross-attention in, the predicted noise (or v) out. Its weights keep
/// diffusers' names under <c>unet.</c>. With a prompt condition (Stable Diffusion) the states are the prompt's
/// text-encoder states, given from outside; there is no learned null condition (classifier-free guidance passes the
/// negative prompt's states), so a batch marked as dropped is refused. With a text or vector condition the library's
/// <see cref="ConditionContextEncoder"/> (weights under <c>condition_encoder.</c>) makes the states and knows the
/// null condition.
/// </summary>
internal sealed class UNet2DConditionNoisePredictor : NoisePredictor
{
    /// <summary>The name this network kind is registered under.</summary>
    public const string RegisteredName = "diffusers-unet2d-condition";

    private readonly UNet2DConditionModel unet;
    private readonly ConditionContextEncoder? condition_encoder;

    /// <summary>Wraps <paramref name="network"/> (loaded weights), or builds one with random weights from the options.</summary>
    public UNet2DConditionNoisePredictor(UNet2DConditionOptions options, UNet2DConditionModel? network = null)
        : base(nameof(UNet2DConditionNoisePredictor), options)
    {
        bool encoded = options.Condition.Kind is ConditionKind.Text or ConditionKind.Vector;
        // A network trained here from scratch starts predicting 0, as the library's other networks do.
        unet = network ?? new UNet2DConditionModel(options.Config, zeroOutput: encoded);
        if (encoded) condition_encoder = new ConditionContextEncoder(options.Condition);
        RegisterComponents();
    }

    /// <summary>The diffusers network.</summary>
    public UNet2DConditionModel UNet => unet;

    /// <summary>The library's condition encoder of a text- or vector-conditional network, or null (Stable Diffusion).</summary>
    public ConditionContextEncoder? ConditionEncoder => condition_encoder;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor timesteps, ConditionBatch? condition)
    {
        if (condition_encoder is not null)
        {
            using var scope = NewDisposeScope();
            var context = condition_encoder.Encode(condition, x.shape[0], x.device);
            return unet.forward(x, timesteps, context).MoveToOuterDisposeScope();
        }
        if (condition is null || condition.Kind != ConditionKind.Prompt)
            throw new ArgumentException("A Stable Diffusion UNet needs the prompt's text-encoder states (an empty prompt's for unconditional samples).", nameof(condition));
        if (condition.NullMask is not null)
            throw new ArgumentException("A Stable Diffusion UNet has no learned null condition; guide with the negative (or empty) prompt's states instead.", nameof(condition));
        return unet.forward(x, timesteps, condition.Values);
    }
}
