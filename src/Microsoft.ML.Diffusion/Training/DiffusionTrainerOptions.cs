using Microsoft.ML.Diffusion.Process;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// Hyper-parameters of Algorithm 1 (training the noise predictor): the settings of <see cref="DiffusionTrainer"/>, and the
/// training half of the ML.NET stage's options (<see cref="MLNet.DiffusionTrainingOptions"/> derives from it).
/// </summary>
public record DiffusionTrainerOptions
{
    /// <summary>The regression target: ε (DDPM), v or x₀; ε here, v in <c>TrainDiffusion</c>'s options.</summary>
    public PredictionType Prediction { get; set; } = PredictionType.Epsilon;

    /// <summary>Images per training step.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>Peak AdamW learning rate (reached after <see cref="WarmupSteps"/>); 2e-4 here, 2e-3 in <c>TrainDiffusion</c>'s options.</summary>
    public double LearningRate { get; set; } = 2e-4;

    /// <summary>Steps of linear learning-rate warm-up from 0 (DDPM used 5000).</summary>
    public int WarmupSteps { get; set; } = 100;

    /// <summary>
    /// How the learning rate falls after warm-up: constant, or linearly or along a cosine to 0 at <see cref="DecaySteps"/>.
    /// Constant here, because a decay needs the run's length; cosine in <c>TrainDiffusion</c>'s options, which know it.
    /// </summary>
    public LearningRateDecay LearningRateDecay { get; set; } = LearningRateDecay.Constant;

    /// <summary>
    /// The step at which a decaying learning rate reaches 0. Required by <see cref="DiffusionTrainer"/> when
    /// <see cref="LearningRateDecay"/> is not constant; <c>TrainDiffusion</c> uses its <c>TrainingSteps</c> when it is null.
    /// </summary>
    public int? DecaySteps { get; set; }

    /// <summary>
    /// Min-SNR-γ loss weighting (Hang et al. 2023): each sample's loss is weighted by min(SNR_t, γ) / SNR_t for ε, by
    /// min(SNR_t, γ) / (SNR_t + 1) for v, and by min(SNR_t, γ) for x₀ targets, so the many easy low-noise steps stop
    /// dominating the gradient. 5 is the paper's choice and <c>TrainDiffusion</c>'s default; null (the default here) weights
    /// every timestep alike (plain MSE).
    /// </summary>
    public double? MinSnrGamma { get; set; }

    /// <summary>
    /// Offset noise: adds a per-image, per-channel constant drawn from N(0, offset²) to the training noise, so the model
    /// learns to change an image's overall brightness (which plain Gaussian noise hides); 0.1 is the usual value, 0 is off.
    /// Training only: sampling is unchanged.
    /// </summary>
    public double OffsetNoise { get; set; }

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
        if (MinSnrGamma is { } gamma && !(gamma > 0 && double.IsFinite(gamma))) throw new ArgumentOutOfRangeException(nameof(MinSnrGamma), MinSnrGamma, "MinSnrGamma must be positive and finite (or null for uniform weighting).");
        if (!(OffsetNoise >= 0 && double.IsFinite(OffsetNoise))) throw new ArgumentOutOfRangeException(nameof(OffsetNoise), OffsetNoise, "OffsetNoise must be non-negative and finite.");
        if (DecaySteps is < 1) throw new ArgumentOutOfRangeException(nameof(DecaySteps), DecaySteps, "DecaySteps must be positive.");
        if (!(EmaDecay >= 0 && EmaDecay < 1)) throw new ArgumentOutOfRangeException(nameof(EmaDecay), EmaDecay, "EmaDecay must lie in [0, 1).");
    }
}
