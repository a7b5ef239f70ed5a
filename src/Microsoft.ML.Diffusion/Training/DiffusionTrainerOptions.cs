using Microsoft.ML.Diffusion.Process;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>Hyper-parameters of Algorithm 1 (training the noise predictor).</summary>
public sealed record DiffusionTrainerOptions
{
    /// <summary>The regression target: ε (DDPM), v or x₀.</summary>
    public PredictionType Prediction { get; init; } = PredictionType.Epsilon;

    /// <summary>Images per training step.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Peak AdamW learning rate (reached after <see cref="WarmupSteps"/>).</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>Steps of linear learning-rate warm-up from 0 (DDPM used 5000).</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Gradients are rescaled so their global L2 norm is at most this (0 disables clipping).</summary>
    public double GradientClipNorm { get; init; } = 1.0;

    /// <summary>
    /// Decay of the exponential moving average of the weights used for sampling (0 disables it). The
    /// effective decay is min(decay, (1 + step)/(10 + step)) so early averages are not dominated by the random start.
    /// </summary>
    public double EmaDecay { get; init; } = 0.999;

    /// <summary>Flip each training image left–right with probability ½ (DDPM did this on CIFAR-10).</summary>
    public bool RandomHorizontalFlip { get; init; }

    /// <summary>
    /// Probability of replacing a training sample's condition with the null condition (classifier-free
    /// guidance needs it; Ho &amp; Salimans used 0.1–0.2). Ignored for unconditional models.
    /// </summary>
    public double ConditionDropout { get; init; } = 0.1;

    /// <summary>Seed for the weights, batches, timesteps and noise: the same seed gives the same model.</summary>
    public int Seed { get; init; }

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "LearningRate must be positive and finite.");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "WarmupSteps must not be negative.");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "WeightDecay must not be negative.");
        if (!(GradientClipNorm >= 0)) throw new ArgumentOutOfRangeException(nameof(GradientClipNorm), GradientClipNorm, "GradientClipNorm must not be negative.");
        if (!(ConditionDropout >= 0 && ConditionDropout <= 1)) throw new ArgumentOutOfRangeException(nameof(ConditionDropout), ConditionDropout, "ConditionDropout must lie in [0, 1].");
        if (!(EmaDecay >= 0 && EmaDecay < 1)) throw new ArgumentOutOfRangeException(nameof(EmaDecay), EmaDecay, "EmaDecay must lie in [0, 1).");
    }
}
