using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// What <see cref="ClipTextModel.Encode"/> returns. <see cref="HiddenState"/>: (B, L, hidden), the sequence a UNet
/// attends to. <see cref="Pooled"/>: (B, hidden), transformers' pooler_output: the full model's final-normed hidden
/// state at each row's end token, whatever layers the hidden state skipped (SDXL projects it for its added condition).
/// </summary>
internal readonly record struct ClipTextOutput(Tensor HiddenState, Tensor Pooled);
