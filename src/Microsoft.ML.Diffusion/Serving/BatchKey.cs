using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Serving;

/// <summary>
/// What requests must share to be sampled together: the same sampler walk (so one forward takes whole or fractional
/// timesteps alike), the same guidance (so every request has the same rows), the same size, and all or none conditioned.
/// </summary>
internal sealed record BatchKey(string Sampler, int Steps, SamplerOptions SamplerOptions, double Guidance, int Height, int Width, bool Conditioned);
