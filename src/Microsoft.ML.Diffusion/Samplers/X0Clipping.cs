namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>How a sampler keeps its x̂₀ prediction inside the data range at each step.</summary>
public enum X0Clipping
{
    /// <summary>Leave x̂₀ as predicted.</summary>
    None,
    /// <summary>Clamp x̂₀ to [−<c>ClipRange</c>, <c>ClipRange</c>] (DDPM's reference code does this).</summary>
    Clip,
    /// <summary>Imagen's dynamic thresholding: clamp each sample to its own |x̂₀| percentile, then rescale.</summary>
    DynamicThreshold,
}
