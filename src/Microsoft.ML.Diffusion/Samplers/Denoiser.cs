using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The noise predictor as a sampler sees it: the model output for a batch of noisy samples (N, C, H, W)
/// at timesteps (N). A trained UNet, a guided pair of passes, or an exact closed form all fit.
/// </summary>
public delegate Tensor Denoiser(Tensor sample, Tensor timesteps);
