namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// What every residual block of a <see cref="UNet2DConditionModel"/> shares (diffusers passes the same resnet_* arguments
/// to each block): GroupNorm groups and epsilon, activation, scale-shift time conditioning, dropout, and the timestep
/// embedding's width.
/// </summary>
internal sealed record ResnetSettings(int Groups, double Eps, string Activation, bool ScaleShift, double Dropout, int TimeChannels)
{
    public ResnetBlock2D Block(int inChannels, int outChannels, double outputScale = 1.0) =>
        new(inChannels, outChannels, TimeChannels, Groups, Eps, Activation, ScaleShift, Dropout, outputScale);
}

/// <summary>
/// The cross-attention transformers of one UNet level (diffusers' Transformer2DModel arguments): heads (channels per
/// head follow from the level's width), the text embedding's width, stacked transformer blocks, whether the first
/// attention also attends to the text (only_cross_attention), linear rather than 1×1-convolution projections, float32
/// attention scores and GroupNorm groups. The UNet's dropout does not reach them: diffusers' UNet blocks build their
/// transformers without it.
/// </summary>
internal sealed record TransformerSettings(int Heads, int CrossAttentionDim, int Layers, bool OnlyCrossAttention,
    bool UseLinearProjection, bool UpcastAttention, int Groups);
