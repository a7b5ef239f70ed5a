using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// A trained diffusion model ready to sample: the noise predictor, the schedule it was trained on and
/// its prediction type. It saves to and loads from one self-describing checkpoint file, independent of
/// ML.NET (whose layer embeds the same bytes in a model zip).
/// </summary>
public sealed class DiffusionModel : IDisposable
{
    /// <summary>Wraps a trained network; the model takes ownership of it.</summary>
    public DiffusionModel(NoisePredictor network, NoiseScheduleOptions schedule, PredictionType prediction, long trainingSteps = 0)
    {
        Network = network ?? throw new ArgumentNullException(nameof(network));
        Devices.DiffusionDevice.EnsureInitialized();
        ScheduleOptions = schedule ?? throw new ArgumentNullException(nameof(schedule));
        Schedule = NoiseSchedule.Create(schedule);
        Prediction = prediction;
        TrainingSteps = trainingSteps;
        Network.eval();
        Device = Network.parameters().First().device;
    }

    /// <summary>The noise predictor ε_θ(x_t, t).</summary>
    public NoisePredictor Network { get; }

    /// <summary>The network's configuration.</summary>
    public NoisePredictorOptions NetworkOptions => Network.Options;

    /// <summary>The schedule's options.</summary>
    public NoiseScheduleOptions ScheduleOptions { get; }

    /// <summary>The schedule the model was trained with.</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>What the network predicts.</summary>
    public PredictionType Prediction { get; }

    /// <summary>Optimiser steps the weights have seen.</summary>
    public long TrainingSteps { get; internal set; }

    /// <summary>Where the weights live.</summary>
    public Device Device { get; }

    /// <summary>Image shape (C, H, W) the model generates.</summary>
    public long[] ImageShape => Autoencoder is null
        ? Network.ImageShape
        : [Autoencoder.Config.OutChannels, Network.ImageShape[1] * Autoencoder.Config.DownscaleFactor, Network.ImageShape[2] * Autoencoder.Config.DownscaleFactor];

    /// <summary>Whether the model samples in an autoencoder's latent space (Stable Diffusion) rather than in pixels.</summary>
    public bool IsLatent => Autoencoder is not null;

    /// <summary>Whether the model takes text prompts, encoded by its own text encoder (Stable Diffusion).</summary>
    public bool TakesPrompts => Prompts is not null;

    // The optional components of a latent text-to-image model; the model owns them.
    internal Networks.Autoencoders.AutoencoderKL? Autoencoder { get; init; }

    internal PromptEncoder? Prompts { get; init; }

    /// <summary>
    /// The files the model's weights were loaded from or last written to. A Stable Diffusion model's zips always refer to
    /// them instead of copying them; a pixel-space model's zips refer to them as the base of the LoRA adapters fused into
    /// it (without adapters its zips hold its checkpoint).
    /// </summary>
    internal ModelSource? Source { get; set; }

    /// <summary>LoRA adapters fused into the weights now (kept by <c>Adapters.LoraFusion</c>): while any are, a file written holds them too, so it is not the model's base.</summary>
    internal int FusedAdapters { get; set; }

    /// <summary>
    /// The files a Stable Diffusion model was loaded from when its UNet has since been fine-tuned in place: they no longer
    /// hold its weights, so a model zip cannot refer to them until the model is written out (<c>SaveDiffusers</c>).
    /// </summary>
    internal ModelSource? FineTunedFrom { get; set; }

    /// <summary>
    /// The first-UNet options of the file the network was converted from on load (a file of kind "unet" that loads as
    /// UNet2DModel), null otherwise: LoRA adapters trained on that first UNet name its layers, and fusing renames them.
    /// </summary>
    internal UNetOptions? ConvertedFrom { get; private set; }

    private bool _disposed;

    /// <summary>
    /// Most samples per network forward pass unless told otherwise. On 2 CPU cores one forward of the bench
    /// network costs 4.5 ms per image at batch 64 and 7.8 ms at 128 (benchmarks: --forward-batches), and
    /// guidance doubles the batch, so larger batches are split into even chunks of at most this size.
    /// </summary>
    public const int DefaultForwardBatchSize = 64;

    /// <summary>The network as a sampler's denoiser (unconditional, or the null condition for a conditional network).</summary>
    public Denoiser AsDenoiser(int forwardBatchSize = DefaultForwardBatchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(forwardBatchSize, 1);
        return (x, t) => ForwardInChunks(x, t, null, forwardBatchSize);
    }

    /// <summary>
    /// The network as a denoiser for <paramref name="condition"/> with classifier-free guidance of scale
    /// <paramref name="guidanceScale"/>; the conditional and unconditional passes run as one batch (split
    /// into chunks of at most <paramref name="forwardBatchSize"/> samples).
    /// </summary>
    public Denoiser AsDenoiser(ConditionBatch condition, double guidanceScale, int forwardBatchSize = DefaultForwardBatchSize)
    {
        ArgumentNullException.ThrowIfNull(condition);
        ArgumentOutOfRangeException.ThrowIfLessThan(forwardBatchSize, 1);
        if (guidanceScale == 1.0) return (x, t) => ForwardInChunks(x, t, condition, forwardBatchSize);
        if (guidanceScale == 0.0) return (x, t) => ForwardInChunks(x, t, null, forwardBatchSize);
        return (x, t) =>
        {
            using var scope = NewDisposeScope();
            using var both = condition.Concat(condition.AllNull());
            var output = ForwardInChunks(cat([x, x], 0), cat([t, t], 0), both, forwardBatchSize);
            var halves = output.chunk(2, 0);
            var (conditional, unconditional) = (halves[0], halves[1]);
            return (unconditional + guidanceScale * (conditional - unconditional)).MoveToOuterDisposeScope();
        };
    }

    // Each sample's output depends only on its own inputs; splitting changes float rounding, not the result.
    internal Tensor ForwardInChunks(Tensor x, Tensor t, ConditionBatch? condition, int forwardBatchSize)
    {
        long n = x.shape[0];
        if (n <= forwardBatchSize) return Network.Forward(x, t, condition);
        long chunks = (n + forwardBatchSize - 1) / forwardBatchSize;
        long size = (n + chunks - 1) / chunks;   // even chunks: 200 → 4 × 50 rather than 3 × 64 + 8
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (long start = 0; start < n; start += size)
        {
            long length = Math.Min(size, n - start);
            using var part = condition?.Slice(start, length);
            parts.Add(Network.Forward(x.narrow(0, start, length), t.narrow(0, start, length), part));
        }
        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    /// <summary>An independent copy of this model on <paramref name="device"/>, owned by the caller.</summary>
    internal DiffusionModel CopyTo(Device device)
    {
        using var buffer = new MemoryStream();
        Save(buffer);
        buffer.Position = 0;
        var copy = Load(buffer, device, "A copy of the model");
        copy.ConvertedFrom = ConvertedFrom;   // written as a UNet2DModel, it is still the network the first UNet's adapters fit
        return copy;
    }

    /// <summary>
    /// The scheduler configuration of the diffusers folder the model came from (or of the model it was fine-tuned from);
    /// <c>DiffusersFormat.SaveDiffusers</c> writes it back unchanged. Null for models trained here.
    /// </summary>
    internal string? DiffusersScheduler { get; set; }

    /// <summary>The model's checkpoint bytes' header.</summary>
    internal CheckpointHeader Header => new() { Network = NetworkOptions, Schedule = ScheduleOptions, Prediction = Prediction, TrainingSteps = TrainingSteps, DiffusersScheduler = DiffusersScheduler };

    /// <summary>Writes the checkpoint to a stream.</summary>
    public void Save(Stream stream)
    {
        ThrowIfSavedByReference();
        DiffusionCheckpoint.Write(stream, Header, WeightsBytes());
    }

    /// <summary>
    /// Writes the checkpoint to a file atomically (the previous file survives a crash mid-write). With no LoRA fused, the
    /// file then holds the model's weights, and model zips of the model with LoRA adapters fused later refer to it as their base.
    /// </summary>
    public void Save(string path)
    {
        ThrowIfSavedByReference();
        DiffusionCheckpoint.WriteFile(path, Header, WeightsBytes());
        if (FusedAdapters == 0) Source = ModelSource.OfCheckpoint(path);
    }

    // A latent text-to-image model is several networks of gigabytes that live in the user's own files.
    private void ThrowIfSavedByReference()
    {
        if (FineTunedFrom is { } origin)
            throw new NotSupportedException($"This Stable Diffusion model was fine-tuned from '{origin.Path}', whose files no longer hold its UNet's weights, and a model zip refers to a model's files instead of copying them. Write it as a diffusers folder with model.SaveDiffusers(folder) first: the model then refers to that folder, and zips saved after it do too.");
        if (IsLatent || TakesPrompts)
            throw new NotSupportedException("A Stable Diffusion model is not copied into a checkpoint: it stays in its diffusers folder or single file, and model zips refer to that (with its SHA-256).");
    }

    /// <summary>
    /// Loads a checkpoint from a file onto <paramref name="device"/> (default: <see cref="DiffusionDevice.Resolve"/>). The
    /// model remembers the file's path and SHA-256: a model zip of it with LoRA adapters fused refers to the file as their base.
    /// </summary>
    public static DiffusionModel Load(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint file '{path}' does not exist.", path);
        DiffusionModel model;
        using (var fs = File.OpenRead(path)) model = Load(fs, device, $"Checkpoint file '{path}'");
        model.Source = ModelSource.OfCheckpoint(path);
        return model;
    }

    /// <summary>Loads a checkpoint from a stream; <paramref name="source"/> names it in error messages.</summary>
    public static DiffusionModel Load(Stream stream, Device? device = null, string source = "The checkpoint")
    {
        DiffusionDevice.EnsureInitialized();   // native settings before the header's network is built
        var (header, weights) = DiffusionCheckpoint.Read(stream, source);
        device ??= DiffusionDevice.Resolve();
        var state = header.FormatVersion >= 2 ? SafeTensors.Read(weights, source) : LegacyWeights.Read(weights, header.Network, source);
        NoisePredictor network;
        try
        {
            // Files of the library's first UNet ("unet") load as the diffusers network that computes them, where one does.
            network = header.Network is UNetOptions first ? FirstUNetFiles.Load(first, state, source) : Built(header.Network, state, source);
        }
        finally
        {
            foreach (var t in state.Values) t.Dispose();
        }
        network.to(device);
        return new DiffusionModel(network, header.Schedule, header.Prediction, header.TrainingSteps)
        {
            DiffusersScheduler = header.DiffusersScheduler,
            ConvertedFrom = header.Network is UNetOptions converted && network is not UNetNoisePredictor ? converted : null,
        };
    }

    private static NoisePredictor Built(NoisePredictorOptions options, Dictionary<string, Tensor> state, string source)
    {
        var network = NoisePredictors.Create(options);
        try
        {
            ModuleWeights.Load(network, state, source);
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private byte[] WeightsBytes() => ModuleWeights.Save(Network);

    /// <inheritdoc/>
    public void Dispose()
    {
        // A Stable Diffusion model fine-tuned in place is also its training result's model: either owner may dispose it.
        if (_disposed) return;
        _disposed = true;
        Network.Dispose();
        Autoencoder?.Dispose();
        Prompts?.Dispose();
    }
}
