using System.Diagnostics;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// Trains a noise predictor by DDPM's Algorithm 1: take clean images x₀, pick t uniformly per image,
/// build x_t by the closed-form forward process, and regress the network's output on the target (ε, v
/// or x₀) with an MSE loss. AdamW with warm-up and gradient clipping; an EMA of the weights for sampling. It trains a
/// new network, or LoRA adapters on a trained model's network, which then stays frozen.
/// </summary>
public sealed class DiffusionTrainer : IDisposable
{
    private readonly DiffusionTrainerOptions _options;
    private readonly NoisePredictor _network;
    private readonly NoisePredictor? _emaNetwork;
    private readonly ExponentialMovingAverage? _ema;
    private readonly LoraTrainingOptions? _loraOptions;
    private readonly LoraNetwork? _lora;             // adapters attached to a start model's network (which the trainer does not own)
    private readonly LoraNetwork? _emaLora;
    private readonly List<(Parameter Parameter, bool RequiresGrad)>? _frozen;   // the start model's parameters, to unfreeze on disposal
    private readonly bool _networkWasTraining;
    private bool _adaptersChecked;
    private bool _disposed;
    private readonly TorchSharp.Modules.AdamW _optimizer;
    private readonly ForwardProcess _forward;
    private readonly Generator _generator;
    private readonly Tensor _lossSum;
    private readonly Tensor? _lossWeights;   // Min-SNR-γ weight per timestep, or null for plain MSE
    private int _lossCount;
    private Tensor? _epochOrder;     // the current epoch's permutation of the training set
    private long _epochPosition;     // how far into it the next batch starts

    private readonly bool _ownsNetwork;

    /// <summary>Creates a trainer with freshly initialised weights (seeded by <see cref="DiffusionTrainerOptions.Seed"/>).</summary>
    public DiffusionTrainer(NoisePredictorOptions network, NoiseScheduleOptions? schedule = null, DiffusionTrainerOptions? options = null, Device? device = null)
        : this(network ?? throw new ArgumentNullException(nameof(network)), null, schedule, options, device)
    {
    }

    /// <summary>
    /// A trainer that trains <paramref name="network"/> itself, in place (a Stable Diffusion UNet is too large to copy):
    /// its weights change with every step, and the trainer does not dispose it.
    /// </summary>
    internal DiffusionTrainer(NoisePredictor network, NoiseScheduleOptions? schedule, DiffusionTrainerOptions? options, Device? device)
        : this(network.Options, network, schedule, options, device)
    {
    }

    private DiffusionTrainer(NoisePredictorOptions network, NoisePredictor? inPlace, NoiseScheduleOptions? schedule, DiffusionTrainerOptions? options, Device? device)
    {
        // A snapshot of the hyper-parameters alone (not of a derived options type): later changes to the caller's options do not reach the trainer.
        _options = options is null ? new DiffusionTrainerOptions() : options.HyperParameters();
        _options.Validate();
        if (_options.LearningRateDecay != LearningRateDecay.Constant && _options.DecaySteps is null)
            throw new ArgumentException($"A {_options.LearningRateDecay} learning-rate decay needs DecaySteps (the step at which the rate reaches 0).", nameof(options));
        DiffusionDevice.EnsureInitialized();
        ScheduleOptions = schedule ?? new NoiseScheduleOptions();
        Schedule = NoiseSchedule.Create(ScheduleOptions);
        Device = device ?? DiffusionDevice.Resolve();

        // Weight initialisation and dropout draw from torch's global generator: seed it here.
        manual_seed(_options.Seed ?? 0);
        _network = inPlace ?? NoisePredictors.Create(network);
        _ownsNetwork = inPlace is null;
        _network.to(Device);
        if (_options.EmaDecay > 0)
        {
            _emaNetwork = NoisePredictors.Create(network);
            _emaNetwork.to(Device);
            _emaNetwork.eval();
            foreach (var p in _emaNetwork.parameters()) p.requires_grad = false;
            _ema = new ExponentialMovingAverage(_network, _emaNetwork, _options.EmaDecay);
        }
        _optimizer = optim.AdamW(_network.parameters(), _options.LearningRate, weight_decay: _options.WeightDecay);
        _forward = new ForwardProcess(Schedule, Device);
        _generator = new Generator(unchecked((ulong)(_options.Seed ?? 0)), CPU);
        _lossSum = zeros(1, dtype: float32, device: Device).DetachFromDisposeScope();
        _lossWeights = _options.MinSnrGamma is { } gamma ? LossWeighting.MinSnrTable(Schedule, _options.Prediction, gamma, Device).DetachFromDisposeScope() : null;
    }

    /// <summary>
    /// Creates a trainer of LoRA adapters for <paramref name="startFrom"/>'s network, which it adapts in place rather than
    /// copying (a Stable Diffusion UNet is gigabytes): adapters are attached to the layers <paramref name="lora"/> names, the
    /// network's own parameters are frozen (requires_grad false), and only the adapters' parameters are optimised, averaged
    /// (when <see cref="DiffusionTrainerOptions.EmaDecay"/> is not 0) and saved in training states. Training runs on the
    /// model's device with its schedule and prediction type (<see cref="DiffusionTrainerOptions.Prediction"/> is ignored).
    /// Until the trainer is disposed, the model's network computes with the adapters; disposing takes them off and
    /// unfreezes the network, leaving the model as it was. <see cref="SaveLora"/> writes the adapters;
    /// <see cref="LoraExtensions.LoadLora"/> fuses such a file into a model.
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid, or name no layer of the network (the message lists some), or the network already has adapters attached.</exception>
    public DiffusionTrainer(DiffusionModel startFrom, LoraTrainingOptions lora, DiffusionTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(startFrom);
        ArgumentNullException.ThrowIfNull(lora);
        ArgumentNullException.ThrowIfNull(options);
        _options = options.HyperParameters() with { Prediction = startFrom.Prediction };
        _options.Validate();
        if (_options.LearningRateDecay != LearningRateDecay.Constant && _options.DecaySteps is null)
            throw new ArgumentException($"A {_options.LearningRateDecay} learning-rate decay needs DecaySteps (the step at which the rate reaches 0).", nameof(options));
        _loraOptions = lora.Snapshot();
        _loraOptions.Validate();
        DiffusionDevice.EnsureInitialized();
        ScheduleOptions = startFrom.ScheduleOptions;
        Schedule = NoiseSchedule.Create(ScheduleOptions);
        Device = startFrom.Device;

        // The adapters' down factors draw from torch's global generator: seed it here.
        manual_seed(_options.Seed ?? 0);
        _network = startFrom.Network;
        _networkWasTraining = _network.training;
        _frozen = [.. _network.parameters().Select(p => (p, p.requires_grad))];
        try
        {
            foreach (var (p, _) in _frozen) p.requires_grad = false;
            _lora = LoraNetwork.Attach(LoraNetwork.AdaptedModule(_network), _loraOptions);
            if (_options.EmaDecay > 0)
            {
                _emaLora = _lora.DetachedCopy();
                foreach (var p in _emaLora.parameters()) p.requires_grad = false;
                _ema = new ExponentialMovingAverage(_lora, _emaLora, _options.EmaDecay);
            }
        }
        catch
        {
            _emaLora?.Dispose();
            _lora?.Dispose();
            foreach (var (p, requiresGrad) in _frozen) p.requires_grad = requiresGrad;
            throw;
        }
        _optimizer = optim.AdamW(_lora.parameters(), _options.LearningRate, weight_decay: _options.WeightDecay);
        _forward = new ForwardProcess(Schedule, Device);
        _generator = new Generator(unchecked((ulong)(_options.Seed ?? 0)), CPU);
        _lossSum = zeros(1, dtype: float32, device: Device).DetachFromDisposeScope();
        _lossWeights = _options.MinSnrGamma is { } gamma ? LossWeighting.MinSnrTable(Schedule, _options.Prediction, gamma, Device).DetachFromDisposeScope() : null;
    }

    /// <summary>The training hyper-parameters.</summary>
    public DiffusionTrainerOptions Options => _options with { };   // a copy: the trainer's own settings stay as they were

    /// <summary>The schedule's options.</summary>
    public NoiseScheduleOptions ScheduleOptions { get; }

    /// <summary>The noise schedule.</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>Where training runs.</summary>
    public Device Device { get; }

    /// <summary>The network being trained (raw weights, not the EMA); for LoRA training, the start model's network with the adapters attached.</summary>
    public NoisePredictor Network => _network;

    /// <summary>Optimiser steps taken so far.</summary>
    public long StepsDone { get; private set; }

    /// <summary>The learning rate for the next step: linear warm-up, then constant or decaying (<see cref="DiffusionTrainerOptions.LearningRateDecay"/>).</summary>
    public double CurrentLearningRate => _options.LearningRate * LearningRateFactor(_options, StepsDone + 1);

    // The fraction of the peak learning rate at 1-based step `step`.
    internal static double LearningRateFactor(DiffusionTrainerOptions o, long step)
    {
        int warmup = o.WarmupSteps;
        if (warmup > 0 && step < warmup) return (double)step / warmup;
        if (o.LearningRateDecay == LearningRateDecay.Constant) return 1.0;
        int end = o.DecaySteps!.Value;
        double progress = end <= warmup ? 1.0 : Math.Clamp((double)(step - warmup) / (end - warmup), 0.0, 1.0);
        return o.LearningRateDecay == LearningRateDecay.Linear ? 1.0 - progress : 0.5 * (1.0 + Math.Cos(Math.PI * progress));
    }

    /// <summary>
    /// One step of Algorithm 1 on a batch of clean images (N, C, H, W) scaled to [−1, 1]. The loss is kept
    /// on the device and averaged by <see cref="TakeMeanLoss"/>, so steps never wait for the host.
    /// </summary>
    public void TrainStep(Tensor x0, ConditionBatch? condition = null)
    {
        ArgumentNullException.ThrowIfNull(x0);
        CheckImageShape(x0, nameof(x0));
        CheckCondition(condition, x0.shape[0], nameof(condition));
        using var scope = NewDisposeScope();
        _network.train();
        long n = x0.shape[0];
        var batch = x0.to(Device);
        if (_options.RandomHorizontalFlip)
        {
            var flip = (rand(n, generator: _generator) < 0.5).to(Device).view(-1, 1, 1, 1);
            batch = where(flip, batch.flip(3), batch);
        }
        var t = randint(0, Schedule.Length, [n], dtype: int64, generator: _generator).to(Device);
        var noise = TrainingNoise(batch.shape, _options.OffsetNoise, _generator).to(Device);
        var (xt, target) = NoisyAndTarget(batch, t, noise);
        ConditionBatch? dropped = null;
        if (condition is { Kind: ConditionKind.Prompt })
        {
            // Text-encoder states have no learned null condition: caption dropout swaps in the empty prompt's states before the step.
            dropped = condition.To(Device);
        }
        else if (condition is not null)
        {
            // Classifier-free guidance training: some samples see the null condition instead of theirs.
            var drop = (rand(n, generator: _generator) < _options.ConditionDropout).to(Device);
            using var onDevice = condition.To(Device);
            dropped = onDevice.WithNull(drop);
        }

        foreach (var g in _optimizer.ParamGroups) g.LearningRate = CurrentLearningRate;
        _optimizer.zero_grad();
        var loss = Loss(xt, t, target, dropped);
        dropped?.Dispose();
        loss.backward();
        if (_options.GradientClipNorm > 0)
        {
            double norm = nn.utils.clip_grad_norm_(Trainable, _options.GradientClipNorm);
            if (!double.IsFinite(norm))
                throw new InvalidOperationException($"Training diverged at step {StepsDone + 1}: the gradient norm is {norm}. Check the images for NaN or infinite values, or lower the learning rate ({_options.LearningRate}).");
        }
        if (_lora is not null && !_adaptersChecked) CheckAdaptersRan();
        _optimizer.step();
        StepsDone++;
        _ema?.Update(StepsDone);
        using (no_grad()) _lossSum.add_(loss.detach());
        _lossCount++;
    }

    // x_t by the closed-form forward process, and the regression target for the prediction type.
    internal (Tensor Noisy, Tensor Target) NoisyAndTarget(Tensor x0, Tensor t, Tensor noise)
        => (_forward.AddNoise(x0, t, noise), _forward.Target(_options.Prediction, x0, noise, t));

    // The step's loss: MSE between the network's prediction on x_t and the target, Min-SNR-γ weighted when set.
    internal Tensor Loss(Tensor xt, Tensor t, Tensor target, ConditionBatch? condition)
    {
        var prediction = _network.Forward(xt, t, condition);
        return _lossWeights is null
            ? nn.functional.mse_loss(prediction, target)
            // Min-SNR-γ: each sample's mean squared error times its timestep's weight, averaged over the batch.
            : ((prediction - target).square().mean([1, 2, 3]) * _lossWeights.index_select(0, t)).mean();
    }

    // What the optimiser steps: the network's parameters, or the LoRA adapters'.
    private IEnumerable<Parameter> Trainable => _lora?.parameters() ?? _network.parameters();

    // An adapter whose layer the network runs with forward() instead of call() never runs, and would never train.
    private void CheckAdaptersRan()
    {
        var idle = _lora!.NotRun();
        if (idle.Count > 0)
            throw new InvalidOperationException($"{idle.Count} of the {_lora.Names.Count} LoRA adapters did not run in the network's forward pass: {LoraAdapter.List(idle)}. " +
                $"{_network.GetType().Name} does not run these layers through call() (which runs forward hooks), so they cannot be adapted; leave them out of TargetModules.");
        _adaptersChecked = true;
    }

    // Standard normal noise, plus for offset noise a per-image, per-channel constant from N(0, offset²). Drawn in this order
    // from the trainer's generator, so seeded runs without offset noise draw exactly what they always have.
    internal static Tensor TrainingNoise(long[] shape, double offset, Generator generator)
    {
        var noise = randn(shape, dtype: float32, generator: generator);
        if (offset == 0) return noise;
        using var perChannel = randn([shape[0], shape[1], 1, 1], dtype: float32, generator: generator);
        return noise.add_(perChannel, alpha: offset);
    }

    /// <summary>The mean loss since the last call (reads it from the device), or NaN if no step was taken.</summary>
    public double TakeMeanLoss()
    {
        if (_lossCount == 0) return double.NaN;
        double mean = _lossSum.item<float>() / _lossCount;
        using (NewDisposeScope()) _lossSum.zero_();   // releases the wrapper zero_ returns
        _lossCount = 0;
        return mean;
    }

    /// <summary>
    /// Trains for <paramref name="steps"/> steps on <paramref name="images"/> (N, C, H, W) in [−1, 1],
    /// visiting the images in a fresh seeded order each epoch.
    /// </summary>
    /// <param name="images">The training set; checked once for shape, range and NaN/infinite values.</param>
    /// <param name="steps">Steps to take in this call.</param>
    /// <param name="progress">Called every <paramref name="reportEvery"/> steps and at the end.</param>
    /// <param name="reportEvery">Steps between progress reports (each reads the loss from the device).</param>
    /// <param name="cancellationToken">Checked before every step; cancelling throws <see cref="OperationCanceledException"/> between steps, leaving the trainer consistent.</param>
    /// <param name="afterStep">Called after every step (e.g. to write periodic checkpoints or poll for cancellation).</param>
    /// <param name="conditions">One condition per image for a conditional network (its rows are picked with each batch); null for an unconditional one.</param>
    public void Train(Tensor images, int steps, Action<TrainingProgress>? progress = null, int reportEvery = 50,
        CancellationToken cancellationToken = default, Action<DiffusionTrainer>? afterStep = null, ConditionBatch? conditions = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckCondition(conditions, images.shape[0], nameof(conditions));
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "steps must not be negative.");
        if (reportEvery < 1) throw new ArgumentOutOfRangeException(nameof(reportEvery), reportEvery, "reportEvery must be positive.");
        ValidateImages(images, nameof(images));
        conditions?.Validate(_network.Options.Condition);

        long count = images.shape[0];
        int batch = (int)Math.Min(_options.BatchSize, count);
        TrainBatches(() =>
        {
            var indices = NextBatchIndices(count, batch).to(images.device);
            return new StepBatch(images.index_select(0, indices), conditions?.Select(indices), null);
        }, steps, progress, reportEvery, cancellationToken, afterStep);
    }

    /// <summary>
    /// The next <paramref name="batch"/> indices into a training set of <paramref name="count"/> rows: each epoch a fresh
    /// permutation from the trainer's generator, kept in its saved state so a resumed run continues the same order.
    /// </summary>
    internal Tensor NextBatchIndices(long count, int batch)
    {
        if (_epochOrder is not null && _epochOrder.shape[0] != count)
        {
            // A different data set than the one the saved order was drawn for: start a new epoch.
            _epochOrder.Dispose();
            _epochOrder = null;
        }
        if (_epochOrder is null || _epochPosition + batch > count)
        {
            _epochOrder?.Dispose();
            _epochOrder = randperm(count, generator: _generator).DetachFromDisposeScope();
            _epochPosition = 0;
        }
        var indices = _epochOrder.narrow(0, _epochPosition, batch);
        _epochPosition += batch;
        return indices;
    }

    /// <summary>A training batch: images (N, C, H, W) in [−1, 1], their conditions, and the data stream's position after it (streamed data).</summary>
    internal readonly record struct StepBatch(Tensor Images, ConditionBatch? Condition, StreamPosition? Position);

    /// <summary>
    /// The training loop over batches from <paramref name="nextBatch"/>, called inside each step's dispose scope. The
    /// time spent in it is reported as waiting for data. A streamed batch's position is recorded (for
    /// <see cref="SaveState"/>) once the step on it is done.
    /// </summary>
    internal void TrainBatches(Func<StepBatch> nextBatch, int steps, Action<TrainingProgress>? progress = null, int reportEvery = 50,
        CancellationToken cancellationToken = default, Action<DiffusionTrainer>? afterStep = null)
    {
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "steps must not be negative.");
        if (reportEvery < 1) throw new ArgumentOutOfRangeException(nameof(reportEvery), reportEvery, "reportEvery must be positive.");
        long target = StepsDone + steps;
        var clock = Stopwatch.StartNew();
        long stepsAtLastReport = StepsDone, images = 0;
        TimeSpan waited = TimeSpan.Zero;
        while (StepsDone < target)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (var scope = NewDisposeScope())
            {
                var before = clock.Elapsed;
                var batch = nextBatch();
                waited += clock.Elapsed - before;
                using var condition = batch.Condition;
                TrainStep(batch.Images, condition);
                images += batch.Images.shape[0];
                if (batch.Position is not null) StreamPosition = batch.Position;
            }

            bool last = StepsDone == target;
            if (progress is not null && (StepsDone % reportEvery == 0 || last))
            {
                double seconds = clock.Elapsed.TotalSeconds;
                double loss = TakeMeanLoss();
                // Without gradient clipping no step reads the gradients' norm; the report's loss is where divergence shows.
                if (!double.IsFinite(loss))
                    throw new InvalidOperationException($"Training diverged by step {StepsDone}: the mean loss is {loss}. Check the images for NaN or infinite values, or lower the learning rate ({_options.LearningRate}).");
                progress(new TrainingProgress((int)StepsDone, (int)target, loss, _options.LearningRate * LearningRateFactor(_options, StepsDone),
                    seconds > 0 ? (StepsDone - stepsAtLastReport) / seconds : 0)
                {
                    ImagesPerSecond = seconds > 0 ? images / seconds : 0,
                    DataWaitFraction = seconds > 0 ? Math.Clamp(waited.TotalSeconds / seconds, 0, 1) : 0,
                    SkippedRows = StreamPosition?.SkippedRows ?? 0,
                });
                stepsAtLastReport = StepsDone;
                images = 0;
                waited = TimeSpan.Zero;
                clock.Restart();
            }
            afterStep?.Invoke(this);
        }
    }

    /// <summary>
    /// Writes everything needed to continue training exactly where it stopped — weights, EMA, optimiser
    /// moments, random generator and epoch position — to one file, atomically (the previous file
    /// survives a crash mid-write).
    /// </summary>
    public void SaveState(string path) => TrainerStateFile.Write(path, this);

    /// <summary>
    /// Restores a state written by <see cref="SaveState"/> into this trainer, which must have been
    /// created with the same network, schedule and options. Training then continues bit for bit as if
    /// it had never stopped.
    /// </summary>
    public void LoadState(string path) => TrainerStateFile.Read(path, this);

    /// <summary>
    /// Writes the trained LoRA adapters (their EMA when it is on) in diffusers v0.21's layout, as
    /// <c>UNet2DConditionModel.save_attn_procs</c> writes them ('<c>…attn1.processor.to_q_lora.down.weight</c>'; other
    /// layers '<c>…proj_in.lora.down.weight</c>'), alpha / rank multiplied into up. <paramref name="path"/> is a file, or
    /// a folder to write <c>pytorch_lora_weights.safetensors</c> into; it is written atomically. Returns the file written.
    /// </summary>
    /// <exception cref="InvalidOperationException">The trainer trains a whole network, not LoRA adapters.</exception>
    public string SaveLora(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var adapter = TrainedAdapter();
        return DiffusersLoraFile.Write(path, [.. adapter.Layers.Select(l => (l.Component, l.Module, l))]);
    }

    /// <summary>A copy of the trained adapters' factors (their EMA when it is on), owned by the caller.</summary>
    internal LoraAdapter TrainedAdapter()
    {
        var adapters = _emaLora ?? _lora ?? throw new InvalidOperationException("This trainer trains a whole network, not LoRA adapters; create it with LoRA options and a model to start from.");
        return LoraAdapter.FromLayers("The trained LoRA", adapters.ToLayers(LoraComponent.UNet));
    }

    /// <summary>The LoRA settings of a LoRA trainer, null for one that trains a whole network.</summary>
    internal LoraTrainingOptions? Lora => _loraOptions?.Snapshot();

    /// <summary>What a training state saves as the network: the network, or the LoRA adapters.</summary>
    internal nn.Module TrainedModule => _lora ?? (nn.Module)_network;

    /// <summary>What a training state saves as the EMA, if there is one.</summary>
    internal nn.Module? EmaModule => _emaLora ?? (nn.Module?)_emaNetwork;

    /// <summary>Copies a trained network's state (same kind and configuration) into the network and its EMA, to fine-tune from it.</summary>
    internal void InitializeWeights(NoisePredictor source)
    {
        var from = source.state_dict();
        foreach (var target in new[] { _network, _emaNetwork })
        {
            if (target is null) continue;
            using (no_grad())
            using (NewDisposeScope())   // releases the wrappers copy_ returns
                foreach (var (name, dst) in target.state_dict())
                    dst.copy_(from.TryGetValue(name, out var value) ? value : throw new ArgumentException($"The starting network has no '{name}'; it is not of this trainer's kind.", nameof(source)));
        }
    }

    internal NoisePredictor? EmaNetwork => _emaNetwork;

    internal TorchSharp.Modules.AdamW Optimizer => _optimizer;

    internal Generator Generator => _generator;

    internal (Tensor? Order, long Position) EpochState => (_epochOrder, _epochPosition);

    /// <summary>Where streamed training stands in its data after the last step (null when training from a tensor).</summary>
    internal StreamPosition? StreamPosition { get; set; }

    internal void RestoreCounters(long stepsDone, Tensor? order, long position, StreamPosition? stream)
    {
        StepsDone = stepsDone;
        StreamPosition = stream;
        _epochOrder?.Dispose();
        _epochOrder = order;
        _epochPosition = position;
        using (NewDisposeScope()) _lossSum.zero_();   // releases the wrapper zero_ returns
        _lossCount = 0;
    }

    /// <summary>
    /// A standalone model for sampling, holding a copy of the EMA weights (or the raw weights when the EMA
    /// is off); later training does not change it.
    /// </summary>
    /// <exception cref="InvalidOperationException">The trainer trains LoRA adapters on a model it does not own: write them with <see cref="SaveLora"/>.</exception>
    public DiffusionModel ToModel()
    {
        if (_lora is not null)
            throw new InvalidOperationException("A LoRA trainer adapts its start model's network in place and has no model of its own: write the adapters with SaveLora and fuse them into the model with LoadLora.");
        var source = _emaNetwork ?? _network;
        var copy = NoisePredictors.Create(_network.Options);
        copy.to(Device);
        using (no_grad())
        using (NewDisposeScope())   // releases the wrappers copy_ returns
        {
            // The state, not only the parameters: a network may keep buffers (e.g. running statistics).
            var from = source.state_dict();
            foreach (var (name, dst) in copy.state_dict())
                dst.copy_(from[name]);
        }
        return new DiffusionModel(copy, ScheduleOptions, _options.Prediction, StepsDone);
    }

    // A LoRA trainer's start model: the adapters come off, the parameters are unfrozen, the mode restored.
    private void ReleaseStartModel()
    {
        if (_frozen is null) return;
        _lora!.Dispose();
        _emaLora?.Dispose();
        foreach (var (p, requiresGrad) in _frozen) p.requires_grad = requiresGrad;
        _network.train(_networkWasTraining);
    }

    private void CheckImageShape(Tensor images, string name)
    {
        var o = _network.Options;
        // A prompt-conditioned (Stable Diffusion) UNet takes latents of any size; only their channels are fixed.
        if (o.Condition.Kind == ConditionKind.Prompt)
        {
            if (images.dim() != 4 || images.shape[1] != o.ImageChannels)
                throw new ArgumentException($"Training latents must have shape (N, {o.ImageChannels}, h, w) to match the network, but {name} has shape [{string.Join(", ", images.shape)}].", name);
            return;
        }
        if (images.dim() != 4 || images.shape[1] != o.ImageChannels || images.shape[2] != o.ImageSize || images.shape[3] != o.ImageSize)
            throw new ArgumentException($"Training images must have shape (N, {o.ImageChannels}, {o.ImageSize}, {o.ImageSize}) to match the network, but {name} has shape [{string.Join(", ", images.shape)}].", name);
    }

    private void CheckCondition(ConditionBatch? condition, long count, string name)
    {
        var kind = _network.Options.Condition.Kind;
        if (condition is null)
        {
            if (kind != ConditionKind.None)
                throw new ArgumentException($"The network is conditioned on {kind}; pass one condition per training image.", name);
            return;
        }
        if (kind == ConditionKind.None)
            throw new ArgumentException("The network is unconditional; it takes no condition.", name);
        if (condition.Kind != kind)
            throw new ArgumentException($"The network is conditioned on {kind}, but {condition.Kind} conditions were given.", name);
        if (condition.Count != count)
            throw new ArgumentException($"There are {condition.Count} conditions for {count} images.", name);
    }

    private void ValidateImages(Tensor images, string name)
    {
        CheckImageShape(images, name);
        if (images.shape[0] == 0) throw new ArgumentException("The training set is empty.", name);
        if (images.dtype != float32) throw new ArgumentException($"Training images must be float32, not {images.dtype}.", name);
        using var scope = NewDisposeScope();
        long nonFinite = (~isfinite(images)).sum().item<long>();
        if (nonFinite > 0) throw new ArgumentException($"The training images contain {nonFinite} NaN or infinite values.", name);
        double min = images.min().item<float>(), max = images.max().item<float>();
        if (min < -1.001 || max > 1.001)
            throw new ArgumentException($"Training images must be scaled to [−1, 1] but range over [{min}, {max}].", name);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ReleaseStartModel();
        if (_frozen is null && _ownsNetwork) _network.Dispose();   // a LoRA trainer's network is its start model's
        _emaNetwork?.Dispose();
        _optimizer.Dispose();
        _forward.Dispose();
        _generator.Dispose();
        _lossSum.Dispose();
        _lossWeights?.Dispose();
        _epochOrder?.Dispose();
    }
}
