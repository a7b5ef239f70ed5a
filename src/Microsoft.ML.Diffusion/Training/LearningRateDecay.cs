namespace Microsoft.ML.Diffusion.Training;

/// <summary>How the learning rate falls after warm-up (<see cref="DiffusionTrainerOptions.LearningRateDecay"/>).</summary>
public enum LearningRateDecay
{
    /// <summary>The peak learning rate until the end.</summary>
    Constant,

    /// <summary>Linearly from the peak after warm-up to 0 at <see cref="DiffusionTrainerOptions.DecaySteps"/>.</summary>
    Linear,

    /// <summary>Along half a cosine from the peak after warm-up to 0 at <see cref="DiffusionTrainerOptions.DecaySteps"/>.</summary>
    Cosine,
}
