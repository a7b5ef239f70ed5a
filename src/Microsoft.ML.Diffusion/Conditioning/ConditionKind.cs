namespace Microsoft.ML.Diffusion.Conditioning;

/// <summary>What a model is conditioned on, besides the noisy image and the step.</summary>
public enum ConditionKind
{
    /// <summary>Unconditional.</summary>
    None,
    /// <summary>A class label in [0, ClassCount); a learned class embedding is added to the time embedding.</summary>
    Class,
    /// <summary>A float vector (e.g. from FeaturizeText or OneHotEncoding), projected and added to the time embedding.</summary>
    Vector,
    /// <summary>Token ids of a text prompt, encoded by a small transformer and read through cross-attention.</summary>
    Text,
    /// <summary>
    /// A text prompt encoded by the model's own text encoder (Stable Diffusion's CLIP): its hidden states (N, L, D),
    /// read through cross-attention.
    /// </summary>
    Prompt,
}
