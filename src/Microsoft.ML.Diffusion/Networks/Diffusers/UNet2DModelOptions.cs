using Microsoft.ML.Diffusion.Conditioning;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The configuration of Hugging Face diffusers' <c>UNet2DModel</c> (the network of google/ddpm-* and of diffusers'
/// unconditional training scripts), field by field as its <c>config.json</c> names them. A network built from it
/// has diffusers' parameter names and shapes, so diffusers' weights load into it unchanged. Class conditioning
/// (<c>num_class_embeds</c>) is <see cref="NoisePredictorOptions.Condition"/> with <see cref="ConditionKind.Class"/>
/// (and <see cref="LearnedNullClass"/>).
/// </summary>
public sealed record UNet2DModelOptions : NoisePredictorOptions
{
    /// <summary><c>down_block_types</c>: "DownBlock2D" or "AttnDownBlock2D" per level.</summary>
    public string[] DownBlockTypes { get; init; } = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"];

    /// <summary><c>up_block_types</c>: "UpBlock2D" or "AttnUpBlock2D" per level, deepest first.</summary>
    public string[] UpBlockTypes { get; init; } = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"];

    /// <summary><c>block_out_channels</c>: channels per level.</summary>
    public int[] BlockOutChannels { get; init; } = [224, 448, 672, 896];

    /// <summary><c>layers_per_block</c>: residual blocks per down level (up levels have one more).</summary>
    public int LayersPerBlock { get; init; } = 2;

    /// <summary><c>norm_num_groups</c>: GroupNorm groups.</summary>
    public int NormNumGroups { get; init; } = 32;

    /// <summary><c>norm_eps</c>: GroupNorm epsilon.</summary>
    public double NormEps { get; init; } = 1e-5;

    /// <summary><c>act_fn</c>: the residual blocks' activation: "silu" (or "swish"), "mish", "gelu" or "relu".</summary>
    public string ActFn { get; init; } = "silu";

    /// <summary><c>time_embedding_type</c>: "positional" (sinusoidal, integer timesteps) or "fourier" (Gaussian Fourier features of log σ).</summary>
    public string TimeEmbeddingType { get; init; } = "positional";

    /// <summary><c>flip_sin_to_cos</c>: the positional embedding puts cosines first.</summary>
    public bool FlipSinToCos { get; init; } = true;

    /// <summary><c>freq_shift</c>: the positional embedding's frequency shift (google/ddpm-* use 1).</summary>
    public double FreqShift { get; init; }

    /// <summary><c>downsample_padding</c>: padding of the stride-2 downsampling convolutions (0 pads right and bottom by one first).</summary>
    public int DownsamplePadding { get; init; } = 1;

    /// <summary><c>attention_head_dim</c>: channels per attention head; null gives one head over all channels.</summary>
    public int? AttentionHeadDim { get; init; } = 8;

    /// <summary><c>add_attention</c>: the mid block has self-attention.</summary>
    public bool AddAttention { get; init; } = true;

    /// <summary><c>resnet_time_scale_shift</c>: "default" (the timestep embedding is added) or "scale_shift" (it scales and shifts the normalised features).</summary>
    public string ResnetTimeScaleShift { get; init; } = "default";

    /// <summary><c>center_input_sample</c>: the input is mapped by 2x − 1 first.</summary>
    public bool CenterInputSample { get; init; }

    /// <summary><c>mid_block_scale_factor</c>: the mid block's outputs are divided by it.</summary>
    public double MidBlockScaleFactor { get; init; } = 1;

    /// <summary><c>dropout</c> inside the residual blocks (training only).</summary>
    public double Dropout { get; init; }

    /// <summary>
    /// The class embedding has one more row than there are classes, the learned null class (label
    /// <c>ClassCount</c>), which dropped and absent conditions use, as the library's classifier-free guidance trains
    /// it: diffusers sees <c>num_class_embeds</c> = classes + 1. False (diffusers' own class-conditional models): a null
    /// condition adds no class embedding.
    /// </summary>
    public bool LearnedNullClass { get; init; }

    /// <inheritdoc/>
    public override IReadOnlyList<ConditionKind> SupportedConditions => [ConditionKind.None, ConditionKind.Class];

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        int levels = BlockOutChannels?.Length ?? 0;
        if (levels == 0) throw new ArgumentException("block_out_channels must name at least one level.", nameof(BlockOutChannels));
        if (DownBlockTypes is null || DownBlockTypes.Length != levels)
            throw new ArgumentException($"down_block_types has {DownBlockTypes?.Length ?? 0} entries but block_out_channels has {levels}.", nameof(DownBlockTypes));
        if (UpBlockTypes is null || UpBlockTypes.Length != levels)
            throw new ArgumentException($"up_block_types has {UpBlockTypes?.Length ?? 0} entries but block_out_channels has {levels}.", nameof(UpBlockTypes));
        foreach (string type in DownBlockTypes)
            if (type is not ("DownBlock2D" or "AttnDownBlock2D"))
                throw new ArgumentException($"down_block_types holds \"{type}\"; supported are DownBlock2D and AttnDownBlock2D.", nameof(DownBlockTypes));
        foreach (string type in UpBlockTypes)
            if (type is not ("UpBlock2D" or "AttnUpBlock2D"))
                throw new ArgumentException($"up_block_types holds \"{type}\"; supported are UpBlock2D and AttnUpBlock2D.", nameof(UpBlockTypes));
        if (LayersPerBlock < 1) throw new ArgumentOutOfRangeException(nameof(LayersPerBlock), LayersPerBlock, "layers_per_block must be at least 1.");
        if (NormNumGroups < 1) throw new ArgumentOutOfRangeException(nameof(NormNumGroups), NormNumGroups, "norm_num_groups must be positive.");
        foreach (int c in BlockOutChannels!)
            if (c < 1 || c % NormNumGroups != 0)
                throw new ArgumentException($"block_out_channels holds {c}, which norm_num_groups ({NormNumGroups}) does not divide.", nameof(BlockOutChannels));
        if (!(NormEps > 0)) throw new ArgumentOutOfRangeException(nameof(NormEps), NormEps, "norm_eps must be positive.");
        Activation.Get(ActFn);   // throws naming an unknown act_fn
        if (TimeEmbeddingType is not ("positional" or "fourier"))
            throw new ArgumentException($"time_embedding_type is \"{TimeEmbeddingType}\"; supported are positional and fourier.", nameof(TimeEmbeddingType));
        if (TimeEmbeddingType == "positional" && BlockOutChannels![0] % 2 != 0)
            throw new ArgumentException($"The positional time embedding needs an even block_out_channels[0], not {BlockOutChannels[0]}.", nameof(BlockOutChannels));
        if (DownsamplePadding is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(DownsamplePadding), DownsamplePadding, "downsample_padding must be 0 or 1.");
        if (AttentionHeadDim is < 1) throw new ArgumentOutOfRangeException(nameof(AttentionHeadDim), AttentionHeadDim, "attention_head_dim must be positive (or null).");
        if (ResnetTimeScaleShift is not ("default" or "scale_shift"))
            throw new ArgumentException($"resnet_time_scale_shift is \"{ResnetTimeScaleShift}\"; supported are default and scale_shift.", nameof(ResnetTimeScaleShift));
        if (!(MidBlockScaleFactor > 0)) throw new ArgumentOutOfRangeException(nameof(MidBlockScaleFactor), MidBlockScaleFactor, "mid_block_scale_factor must be positive.");
        if (LearnedNullClass && Condition.Kind != ConditionKind.Class)
            throw new ArgumentException("LearnedNullClass needs a class condition (num_class_embeds).", nameof(LearnedNullClass));
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "dropout must lie in [0, 1).");
        if (ImageSize % (1 << (levels - 1)) != 0)
            throw new ArgumentException($"sample_size {ImageSize} is not divisible by 2^{levels - 1} (one halving per level but the last).", nameof(ImageSize));
    }
}
