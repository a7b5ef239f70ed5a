namespace Microsoft.ML.Diffusion.Process;

/// <summary>What the noise predictor is trained to output; samplers convert any of them to x̂₀ and ε̂.</summary>
public enum PredictionType
{
    /// <summary>The added noise ε (DDPM's choice).</summary>
    Epsilon,
    /// <summary>The velocity v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (Salimans &amp; Ho 2022).</summary>
    VPrediction,
    /// <summary>The clean sample x₀ itself.</summary>
    Sample,
}
