using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Options for <see cref="DiffusionCatalog.TrainDiffusion(TransformsCatalog, DiffusionTrainingOptions)"/>: every
/// hyper-parameter of <see cref="DiffusionTrainerOptions"/> plus the stage's columns, network, schedule, length,
/// device and checkpoints.
/// </summary>
public sealed record DiffusionTrainingOptions : DiffusionTrainerOptions
{
    /// <summary>
    /// Options with the training recipe measured fastest to good samples (docs/training-recipe.md): the v target,
    /// Min-SNR-5 loss weighting and a peak learning rate of 2e-3 falling along a cosine to 0 at the last training step.
    /// <see cref="DiffusionTrainer"/>'s own options keep plain DDPM training (ε, uniform weighting, a constant 2e-4),
    /// because a decay needs the run's length, which only this stage knows.
    /// </summary>
    public DiffusionTrainingOptions()
    {
        LearningRate = 2e-3;
        LearningRateDecay = LearningRateDecay.Cosine;
        MinSnrGamma = 5;
        Prediction = PredictionType.VPrediction;
    }

    /// <summary>The image column: an image of fixed size (LoadImages + ResizeImages) or a float vector of pixels (ExtractPixels).</summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>Channels the model works with: 1 (images are converted to grey), 3 (RGB; transparency composited over white) or 4 (RGBA).</summary>
    public int ImageChannels { get; set; } = 3;

    /// <summary>Image height and width; null takes it from the column type.</summary>
    public int? ImageSize { get; set; }

    /// <summary>Value range of a float-vector image column (ignored for image columns).</summary>
    public PixelRange PixelRange { get; set; } = PixelRange.Bytes;

    /// <summary>
    /// Optional condition column: a key column (MapValueToKey) or integer labels for class conditioning,
    /// a known-size float vector (FeaturizeText, OneHotEncoding…) for vector conditioning, or a vector of
    /// keys (TokenizeIntoWords + MapValueToKey) for text prompts, encoded by a small transformer trained
    /// with the model and read through cross-attention. Null trains an unconditional model.
    /// </summary>
    public string? ConditionColumnName { get; set; }

    /// <summary>Number of classes when the condition column holds plain integers (key columns carry their own count).</summary>
    public int? ClassCount { get; set; }

    /// <summary>Most tokens in a text prompt; longer prompts are an error.</summary>
    public int MaxTokens { get; set; } = 16;

    /// <summary>Width of the text encoder.</summary>
    public int TextWidth { get; set; } = 64;

    /// <summary>Transformer layers of the text encoder.</summary>
    public int TextLayers { get; set; } = 2;

    /// <summary>Attention heads of the text encoder.</summary>
    public int TextHeads { get; set; } = 4;


    /// <summary>
    /// The noise predictor to train: the options of any kind registered with <see cref="NoisePredictors"/> (a
    /// <see cref="UNetOptions"/> builds the diffusers network of its shape). Its image shape and condition are taken from
    /// the columns. Null trains
    /// the default network, a Hugging Face diffusers UNet of the shape the UNet settings below describe, which are ignored
    /// otherwise: <c>UNet2DModel</c> for unconditional and class-conditional models (a learned null class for guidance),
    /// <c>UNet2DConditionModel</c> reading the library's condition encoder through cross-attention for text and vector
    /// conditions. Both export with <c>SaveDiffusers</c>.
    /// </summary>
    public NoisePredictorOptions? Network { get; set; }

    /// <summary>
    /// A trained model to continue training (fine-tuning), such as one from <c>DiffusersFormat.Load</c>: its network
    /// (kind, size and weights), noise schedule and prediction type replace <see cref="Network"/>, the network settings,
    /// <see cref="Schedule"/> and <see cref="DiffusionTrainerOptions.Prediction"/>. The images must have its size and channels, and
    /// a conditional model needs a condition column of its kind. A checkpoint being resumed holds newer weights and wins.
    /// A pixel-space model is read, not changed or disposed: training works on a copy.
    /// <para>
    /// A Stable Diffusion model (<c>StableDiffusionFormat.Load</c>) is fine-tuned in place instead, since a copy of its UNet
    /// would double gigabytes: <see cref="ConditionColumnName"/> names a text column of captions, the images (any square
    /// size that is a multiple of 8 and of the autoencoder's factor) are encoded once by its frozen autoencoder and the
    /// captions by its frozen text encoder, and only the UNet trains. After <c>Fit</c> this model's UNet holds the trained
    /// weights and the result's <see cref="DiffusionTrainingTransformer.Model"/> is this same object (disposing either
    /// disposes both). Its files no longer hold its weights, so a model zip refuses it until it is written out with
    /// <c>SaveDiffusers(folder)</c>, after which it refers to that folder. Training runs on the model's device.
    /// </para>
    /// </summary>
    public DiffusionModel? StartFrom { get; set; }

    /// <summary>
    /// Train LoRA adapters on <see cref="StartFrom"/>'s network instead of the whole network: its weights are frozen and
    /// only the adapters' parameters are optimised, averaged (when <see cref="DiffusionTrainerOptions.EmaDecay"/> is not 0)
    /// and checkpointed. The network is adapted in place, not copied, and runs on its own device (<see cref="Device"/> is
    /// not used). The result's model is StartFrom itself with the trained adapters fused into its weights
    /// (<see cref="DiffusionTrainingTransformer.Lora"/> saves them in diffusers' layout; disposing the result, or
    /// unfusing, returns StartFrom's weights exactly as they were). Null (the default) trains the whole network.
    /// </summary>
    public LoraTrainingOptions? Lora { get; set; }

    /// <summary>Channels of the default network's first level (diffusers' <c>block_out_channels[0]</c>).</summary>
    public int BaseChannels { get; set; } = 32;

    /// <summary>Channel multiplier per level of the default network (<c>block_out_channels</c> = BaseChannels × multiplier); the image is halved between levels.</summary>
    public int[] ChannelMultipliers { get; set; } = [1, 2, 2];

    /// <summary>Residual blocks per level of the default network (<c>layers_per_block</c>).</summary>
    public int ResidualBlocksPerLevel { get; set; } = 1;

    /// <summary>Feature-map sizes whose levels have attention blocks (and, with text or vector conditions, cross-attention); null puts it at the smallest level. The middle always attends.</summary>
    public int[]? AttentionResolutions { get; set; }

    /// <summary>Heads per attention layer of the default network.</summary>
    public int AttentionHeads { get; set; } = 1;

    /// <summary>GroupNorm groups of the default network (<c>norm_num_groups</c>).</summary>
    public int NormGroups { get; set; } = 8;

    /// <summary>Dropout inside the default network's residual blocks.</summary>
    public double Dropout { get; set; }

    /// <summary>
    /// The noise schedule: kind, diffusion steps T, β range, zero terminal SNR (default: DDPM's linear β from 10⁻⁴ to
    /// 0.02 over 1,000 steps). Saved with the model.
    /// </summary>
    public NoiseScheduleOptions Schedule { get; set; } = new();


    /// <summary>Optimiser steps to train for (in total, counting steps restored from a checkpoint).</summary>
    public int TrainingSteps { get; set; } = 2000;

    /// <summary>
    /// In memory, streamed from row cursors, or chosen by size (the default); see <see cref="TrainingDataLoading"/> and
    /// docs/training-data.md for the order each gives.
    /// </summary>
    public TrainingDataLoading DataLoading { get; set; } = TrainingDataLoading.Auto;

    /// <summary>
    /// Rows the streaming shuffle buffer holds; null holds as many as take 128 MiB as floats (at least four batches).
    /// Larger buffers shuffle better; a data set that fits in the buffer is kept after its first pass.
    /// </summary>
    public int? ShuffleBufferSize { get; set; }

    /// <summary>
    /// Skip rows whose image or condition cannot be read (an unreadable file, a wrong size, NaN pixels) instead of
    /// stopping; the count is logged and reported in <see cref="TrainingProgress.SkippedRows"/>.
    /// </summary>
    public bool SkipBadRows { get; set; }

    /// <summary>"auto" (CUDA when available), "cpu" or "cuda[:N]".</summary>
    public string Device { get; set; } = "auto";

    /// <summary>Steps between progress reports (log messages and <see cref="Progress"/> calls).</summary>
    public int ReportEvery { get; set; } = 50;

    /// <summary>Called with step, loss, learning rate and steps/s every <see cref="ReportEvery"/> steps.</summary>
    public Action<TrainingProgress>? Progress { get; set; }

    /// <summary>Stops training between steps (as does <c>MLContext.CancelExecution()</c>).</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>
    /// Training-state file written atomically every <see cref="CheckpointEvery"/> steps, when training
    /// ends and when it is cancelled; null writes none.
    /// </summary>
    public string? CheckpointPath { get; set; }

    /// <summary>Steps between periodic checkpoints.</summary>
    public int CheckpointEvery { get; set; } = 500;

    /// <summary>Continue from <see cref="CheckpointPath"/> when that file exists.</summary>
    public bool ResumeFromCheckpoint { get; set; } = true;

    /// <summary>
    /// Whether to keep an exponential moving average of the weights (<see cref="DiffusionTrainerOptions.EmaDecay"/>) and
    /// give the result its weights. Null (the default) keeps one for pixel-space models and none for a Stable Diffusion
    /// <see cref="StartFrom"/>, whose UNet an average would double in memory; true or false decides. With an average, a Stable
    /// Diffusion UNet ends holding the averaged weights.
    /// </summary>
    public bool? UseEma { get; set; }

    /// <summary>
    /// Stable Diffusion fine-tuning: the probability of training a sample on the empty prompt instead of its caption
    /// (diffusers' <c>--proportion_empty_prompts</c>), drawn each step; it keeps the unconditional prediction that
    /// classifier-free guidance needs. 0 by default: a pretrained model already has one. (<see cref="DiffusionTrainerOptions.ConditionDropout"/>
    /// is for the pixel-space models' learned null condition.)
    /// </summary>
    public double CaptionDropout { get; set; }

    /// <summary>
    /// Stable Diffusion fine-tuning: encode each image to a seeded sample of the autoencoder's latent distribution
    /// (true, the default, as diffusers' <c>train_text_to_image.py</c> does), or to its mean (false). Either is drawn once
    /// per image and kept for every epoch.
    /// </summary>
    public bool SampleLatents { get; set; } = true;

    // A snapshot for the estimator, so changing these options after building a pipeline does not change it.
    internal DiffusionTrainingOptions Snapshot() => this with
    {
        ChannelMultipliers = (int[])ChannelMultipliers.Clone(),
        AttentionResolutions = (int[]?)AttentionResolutions?.Clone(),
        Lora = Lora?.Snapshot(),
    };
}
