using Microsoft.ML.Diffusion.Process;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// Hyper-parameters of Algorithm 1 (training the noise predictor): the settings of <see cref="DiffusionTrainer"/>, and the
/// training half of the ML.NET stage's options (<see cref="MLNet.DiffusionTrainingOptions"/> derives from it).
/// </summary>
public record DiffusionTrainerOptions
{
    /// <summary>The regression target: ε (DDPM), v or x₀.</summary>
    public PredictionType Prediction { get; set; } = PredictionType.Epsilon;

    /// <summary>Images per training step.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>Peak AdamW learning rate (reached after <see cref="WarmupSteps"/>).</summary>
    public double LearningRate { get; set; } = 2e-4;

    /// <summary>Steps of linear learning-rate warm-up from 0 (DDPM used 5000).</summary>
    public int WarmupSteps { get; set; } = 100;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Gradients are rescaled so their global L2 norm is at most this (0 disables clipping).</summary>
    public double GradientClipNorm { get; set; } = 1.0;

    /// <summary>
    /// Decay of the exponential moving average of the weights used for sampling (0 disables it). The
    /// effective decay is min(decay, (1 + step)/(10 + step)) so early averages are not dominated by the random start.
    /// </summary>
    public double EmaDecay { get; set; } = 0.999;

    /// <summary>Flip each training image left–right with probability ½ (DDPM did this on CIFAR-10).</summary>
    public bool RandomHorizontalFlip { get; set; }

    /// <summary>
    /// Probability of replacing a training sample's condition with the null condition (classifier-free
    /// guidance needs it; Ho &amp; Salimans used 0.1–0.2). Ignored for unconditional models.
    /// </summary>
    public double ConditionDropout { get; set; } = 0.1;

    /// <summary>
    /// Seed for the weights, batches, timesteps and noise: the same seed gives the same model. Null is 0 for
    /// <see cref="DiffusionTrainer"/>; <c>TrainDiffusion</c> draws one from the MLContext's seed instead.
    /// </summary>
    public int? Seed { get; set; }

    // These settings as a plain DiffusionTrainerOptions, whatever type derives from it.
    internal DiffusionTrainerOptions HyperParameters() => new(this);

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public virtual void Validate()
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
