using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
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
    public long TrainingSteps { get; }

    /// <summary>Where the weights live.</summary>
    public Device Device { get; }

    /// <summary>Image shape (C, H, W) the model generates.</summary>
    public long[] ImageShape => Network.ImageShape;

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
    private Tensor ForwardInChunks(Tensor x, Tensor t, ConditionBatch? condition, int forwardBatchSize)
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

    /// <summary>A sampler configured for this model's prediction type.</summary>
    public IDiffusionSampler CreateSampler(GenerationOptions options) => DiffusionSamplers.Create(options.Sampler, Schedule, new SamplerOptions
    {
        Prediction = Prediction,
        Eta = options.Eta,
        Clipping = options.Clipping,
        ClipRange = options.ClipRange,
        ThresholdPercentile = options.ThresholdPercentile,
        UseClippedModelOutput = options.UseClippedModelOutput,
        UseLargeVariance = options.UseLargeVariance,
        SetAlphaToOne = options.SetAlphaToOne,
        Spacing = options.Spacing,
        StepsOffset = options.StepsOffset,
    });

    /// <summary>
    /// Generates one image per seed, in one sampler run over the whole batch. Each image depends only on
    /// its own seed (its starting noise and step noise come from a generator of its own).
    /// </summary>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per seed for a conditional model; null samples unconditionally.</param>
    public Tensor Generate(GenerationOptions options, IReadOnlyList<long> seeds, Action<int, int>? onStep = null,
        CancellationToken cancellationToken = default, ConditionBatch? condition = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        CheckCondition(condition, seeds.Count);
        using var noise = NoiseSource.PerSample(seeds);
        using var sampler = CreateSampler(options);
        using var scope = NewDisposeScope();
        var x = noise.Next([seeds.Count, .. ImageShape], Device);
        int steps = options.Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, Schedule);
        using var onDevice = condition?.To(Device);
        return SampleClamped(DenoiserFor(options, onDevice), sampler, x, steps, noise, onStep, cancellationToken);
    }

    /// <summary>
    /// Image-to-image (SDEdit, Meng et al. 2022): each image is noised by the forward process to the point
    /// <paramref name="strength"/> of the way along the sampler's timesteps, then denoised from there with
    /// <paramref name="options"/>' sampler, so the result keeps the image's layout and colours more the lower the strength.
    /// With N steps the last ⌊N·strength⌋ of them run (as diffusers' img2img pipelines count). Strength 0 returns the images
    /// unchanged; strength 1 is <see cref="Generate"/> for the same seeds, starting from pure noise. Each image's noise comes
    /// from its own seed.
    /// </summary>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="images">Images (N, C, H, W) in [−1, 1], of the model's shape.</param>
    /// <param name="strength">How much to redraw, in [0, 1].</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per image for a conditional model; null samples unconditionally.</param>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    public Tensor ImageToImage(GenerationOptions options, Tensor images, double strength, IReadOnlyList<long> seeds,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default, ConditionBatch? condition = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(seeds);
        if (!(strength >= 0 && strength <= 1))
            throw new ArgumentOutOfRangeException(nameof(strength), strength, "The strength must lie in [0, 1] (0 keeps the image, 1 redraws it from pure noise).");
        if (images.dim() != 4 || !images.shape.Skip(1).SequenceEqual(ImageShape))
            throw new ArgumentException($"The images must have shape (N, {string.Join(", ", ImageShape)}) to match the model, not [{string.Join(", ", images.shape)}].", nameof(images));
        if (images.shape[0] != seeds.Count)
            throw new ArgumentException($"There are {images.shape[0]} images for {seeds.Count} seeds.", nameof(seeds));
        using (var check = NewDisposeScope())
        {
            long nonFinite = (~isfinite(images)).sum().item<long>();
            if (nonFinite > 0) throw new ArgumentException($"The images contain {nonFinite} NaN or infinite values.", nameof(images));
        }
        options.Validate();
        int steps = options.Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, Schedule);
        int redrawn = Math.Min((int)Math.Floor(steps * strength), steps);
        if (redrawn == 0) return images.to(float32).to(Device).clone();
        if (redrawn == steps) return Generate(options, seeds, onStep, cancellationToken, condition);
        CheckCondition(condition, seeds.Count);

        using var noise = NoiseSource.PerSample(seeds);
        using var sampler = CreateSampler(options);
        using var scope = NewDisposeScope();
        sampler.SetTimesteps(steps);
        int order = (sampler.Timesteps.Count + steps - 1) / steps;   // evaluations per step (Heun's pairs)
        int start = (steps - redrawn) * order;
        double t = sampler.Timesteps[start];
        // x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, with ᾱ at a fractional (Karras) timestep from its interpolated σ.
        double alphaCumprod = t == Math.Floor(t) ? Schedule.AlphasCumprod[(int)t] : NoiseLevels.AlphaCumprodOf(NoiseLevels.SigmaAt(Schedule, t));
        var epsilon = noise.Next([seeds.Count, .. ImageShape], Device);
        var x = Math.Sqrt(alphaCumprod) * images.to(float32).to(Device) + Math.Sqrt(1 - alphaCumprod) * epsilon;
        using var onDevice = condition?.To(Device);
        return SampleClamped(DenoiserFor(options, onDevice), sampler, x, steps, noise, onStep, cancellationToken, start);
    }

    /// <summary>
    /// Inpainting by RePaint (Lugmayr et al. 2022): where <paramref name="mask"/> is 1 the model redraws the image, where
    /// it is 0 the image is kept, and the output equals the input there exactly. At each step the kept region is the
    /// input noised by the forward process to that step and the redrawn region is the model's denoising step; jumping
    /// back and resampling (<see cref="InpaintingOptions.JumpLength"/>, <see cref="InpaintingOptions.Resamplings"/>) makes the two
    /// agree. A mask of zeros returns the images; a mask of ones draws new images (with this walk, not
    /// <see cref="Generate"/>'s sampler). Each image's noise comes from its own seed.
    /// </summary>
    /// <param name="options">Steps, jumps, η and guidance.</param>
    /// <param name="images">Images (N, C, H, W) in [−1, 1], of the model's shape.</param>
    /// <param name="mask">1 where to redraw, 0 where to keep: (N, 1, H, W) for all channels or (N, C, H, W); values in [0, 1].</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="condition">One condition per image for a conditional model; null samples unconditionally.</param>
    /// <returns>Images (N, C, H, W) in [−1, 1], owned by the caller.</returns>
    public Tensor Inpaint(InpaintingOptions options, Tensor images, Tensor mask, IReadOnlyList<long> seeds,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default, ConditionBatch? condition = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(mask);
        ArgumentNullException.ThrowIfNull(seeds);
        options.Validate();
        if (images.dim() != 4 || !images.shape.Skip(1).SequenceEqual(ImageShape))
            throw new ArgumentException($"The images must have shape (N, {string.Join(", ", ImageShape)}) to match the model, not [{string.Join(", ", images.shape)}].", nameof(images));
        long n = images.shape[0];
        if (n != seeds.Count) throw new ArgumentException($"There are {n} images for {seeds.Count} seeds.", nameof(seeds));
        if (mask.dim() != 4 || mask.shape[0] != n || (mask.shape[1] != 1 && mask.shape[1] != ImageShape[0]) || mask.shape[2] != ImageShape[1] || mask.shape[3] != ImageShape[2])
            throw new ArgumentException($"The mask must have shape ({n}, 1 or {ImageShape[0]}, {ImageShape[1]}, {ImageShape[2]}), not [{string.Join(", ", mask.shape)}].", nameof(mask));
        if (options.Steps > Schedule.Length) throw new ArgumentOutOfRangeException(nameof(options), options.Steps, $"Steps must not exceed the schedule's {Schedule.Length} steps.");
        using (var check = NewDisposeScope())
        {
            long nonFinite = (~isfinite(images)).sum().item<long>();
            if (nonFinite > 0) throw new ArgumentException($"The images contain {nonFinite} NaN or infinite values.", nameof(images));
            if (!(mask.min().item<float>() >= 0 && mask.max().item<float>() <= 1)) throw new ArgumentException("The mask's values must lie in [0, 1] (1 = redraw).", nameof(mask));
        }
        CheckCondition(condition, n);

        using var noise = NoiseSource.PerSample(seeds);
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var known = images.to(float32).to(Device);
        var redraw = mask.to(float32).to(Device).expand(known.shape);
        var keep = 1 - redraw;
        using var onDevice = condition?.To(Device);
        var denoiser = DenoiserFor(options.GuidanceScale, options.ForwardBatchSize, onDevice);
        var walk = RePaintTimesteps.Create(Schedule.Length, options.Steps, options.JumpLength, options.Resamplings);
        int ratio = Schedule.Length / options.Steps;
        int evaluations = walk.Where((t, i) => i == 0 || t < walk[i - 1]).Count(), done = 0;   // the steps down
        var x = noise.Next(known.shape, Device).DetachFromDisposeScope();
        // As diffusers' RePaintPipeline: a step down from t leaves x at t − ratio; a step up to t re-noises x from the previous
        // value's time by `ratio` training steps.
        int last = walk[0] + 1;
        try
        {
            foreach (int t in walk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var step = NewDisposeScope();
                Tensor next;
                if (t < last)
                {
                    // Denoise from t to t − ratio: DDIM(η) on the redrawn part, the input noised by q(x_{t−ratio} | x₀) on the kept part.
                    double a = Schedule.AlphasCumprod[t], aPrev = t - ratio >= 0 ? Schedule.AlphasCumprod[t - ratio] : 1.0;
                    var output = denoiser(x, full(n, (long)t, dtype: int64, device: Device));
                    var x0 = PredictionConverter.ToSample(Prediction, output, x, a);
                    var eps = PredictionConverter.ToNoise(x, x0, a);   // from the unclipped x̂₀, as diffusers' RePaint uses the model's ε
                    x0 = x0.clamp(-1, 1);
                    double variance = (1 - aPrev) / (1 - a) * (1 - a / aPrev);
                    double sigma = options.Eta * Math.Sqrt(Math.Max(variance, 0));
                    var z = noise.Next(known.shape, Device);
                    var unknown = Math.Sqrt(aPrev) * x0 + Math.Sqrt(Math.Max(1 - aPrev - sigma * sigma, 0)) * eps;
                    if (t > 0 && sigma > 0) unknown = unknown + sigma * z;
                    var kept = Math.Sqrt(aPrev) * known + Math.Sqrt(1 - aPrev) * z;
                    next = redraw * unknown + keep * kept;
                    onStep?.Invoke(++done, evaluations);
                }
                else
                {
                    // Jump back: re-noise by the forward process from `last` up to t, one training step at a time.
                    next = x.alias();
                    for (int s = last; s < t; s++)
                    {
                        double beta = Schedule.Betas[s];
                        next = Math.Sqrt(1 - beta) * next + Math.Sqrt(beta) * noise.Next(known.shape, Device);
                    }
                }
                var detached = next.DetachFromDisposeScope();
                x.Dispose();
                x = detached;
                last = t;
            }
            // The last denoising step lands on t = 0 − ratio (clean): keep the input exactly where the mask keeps it.
            return (redraw * x.clamp(-1, 1) + keep * known).MoveToOuterDisposeScope();
        }
        finally
        {
            x.Dispose();
        }
    }

    /// <summary>
    /// A strip of <paramref name="count"/> images moving smoothly from seed <paramref name="seedA"/>'s image to
    /// <paramref name="seedB"/>'s: the starting noises are spherically interpolated (slerp keeps them at the norm of
    /// Gaussian noise, where a straight line would pass through low-norm noise the model never saw), then sampled. With
    /// a deterministic sampler (DDIM at η = 0, DPM-Solver++, Heun) the ends are <see cref="Generate"/>'s images of the two
    /// seeds (up to the float rounding of another batch size); a stochastic sampler's step noise comes from <paramref name="seedA"/>.
    /// </summary>
    /// <returns>Images (count, C, H, W) in [−1, 1], owned by the caller.</returns>
    public Tensor Interpolate(GenerationOptions options, long seedA, long seedB, int count, Action<int, int>? onStep = null,
        CancellationToken cancellationToken = default, ConditionBatch? condition = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "An interpolation needs at least 2 images (the two ends).");
        options.Validate();
        CheckCondition(condition, count);
        using var scope = NewDisposeScope();
        using var sourceA = NoiseSource.PerSample([seedA]);
        using var sourceB = NoiseSource.PerSample([seedB]);
        var a = sourceA.Next([1, .. ImageShape], Device);
        var b = sourceB.Next([1, .. ImageShape], Device);
        var x = cat(Enumerable.Range(0, count).Select(i => Slerp(a, b, (double)i / (count - 1))).ToArray(), 0);
        using var sampler = CreateSampler(options);
        int steps = options.Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, Schedule);
        using var onDevice = condition?.To(Device);
        using var stepNoise = sampler.IsStochastic ? NoiseSource.FromSeed(seedA) : null;
        return SampleClamped(DenoiserFor(options, onDevice), sampler, x, steps, stepNoise, onStep, cancellationToken);
    }

    /// <summary>
    /// A strip of <paramref name="count"/> images of one seed moving from condition <paramref name="from"/> to
    /// <paramref name="to"/> (two classes, two prompts, two vectors): every image starts from the seed's noise, and image i's
    /// prediction at each step is (1 − λᵢ)·ε(x, from) + λᵢ·ε(x, to) with λᵢ = i / (count − 1), each side guided by
    /// <see cref="GenerationOptions.GuidanceScale"/> (the weighted sum of predictions of composable diffusion, Liu et al.
    /// 2022). The ends are <see cref="Generate"/>'s images of the seed under each condition (up to the float rounding of
    /// another batch size); the network is evaluated twice per image and step.
    /// </summary>
    /// <param name="options">Sampler, steps and guidance.</param>
    /// <param name="seed">The seed of every image's starting noise (and a stochastic sampler's step noise).</param>
    /// <param name="from">The first image's condition (a batch of one).</param>
    /// <param name="to">The last image's condition (a batch of one).</param>
    /// <param name="count">Images in the strip, at least 2.</param>
    /// <param name="onStep">Called after each sampler step with (steps done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <returns>Images (count, C, H, W) in [−1, 1], owned by the caller.</returns>
    public Tensor InterpolateConditions(GenerationOptions options, long seed, ConditionBatch from, ConditionBatch to, int count,
        Action<int, int>? onStep = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "An interpolation needs at least 2 images (the two ends).");
        if (from.Count != 1) throw new ArgumentException($"'from' must hold one condition, not {from.Count}.", nameof(from));
        if (to.Count != 1) throw new ArgumentException($"'to' must hold one condition, not {to.Count}.", nameof(to));
        options.Validate();
        CheckCondition(from, 1);
        CheckCondition(to, 1);
        using var scope = NewDisposeScope();
        using var source = NoiseSource.PerSample([seed]);
        var x = source.Next([1, .. ImageShape], Device).expand(count, -1, -1, -1).contiguous();
        using var every = zeros(count, dtype: int64);
        using var fromAll = from.Select(every);
        using var toAll = to.Select(every);
        // Blending two guided predictions is u + w·((1 − λ)·ε_from + λ·ε_to − u): one forward over the from, to (and, when
        // guided, null) conditions, the unconditional pass shared by both sides.
        double w = options.GuidanceScale;
        bool guided = w != 1.0;
        using var both = fromAll.Concat(toAll);
        using var nulls = guided ? fromAll.AllNull() : null;
        using var withNull = nulls is null ? null : both.Concat(nulls);
        using var conditions = (withNull ?? both).To(Device);
        int passes = guided ? 3 : 2;
        var lambda = linspace(0, 1, count, dtype: float32, device: Device).view(count, 1, 1, 1);
        Denoiser blended = (sample, t) =>
        {
            using var step = NewDisposeScope();
            var output = ForwardInChunks(cat(Enumerable.Repeat(sample, passes).ToArray(), 0), cat(Enumerable.Repeat(t, passes).ToArray(), 0),
                conditions, options.ForwardBatchSize).chunk(passes, 0);
            var mixed = (1 - lambda) * output[0] + lambda * output[1];
            return (guided ? output[2] + w * (mixed - output[2]) : mixed).MoveToOuterDisposeScope();
        };
        using var sampler = CreateSampler(options);
        int steps = options.Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, Schedule);
        using var stepNoise = sampler.IsStochastic ? NoiseSource.FromSeed(seed) : null;
        return SampleClamped(blended, sampler, x, steps, stepNoise, onStep, cancellationToken);
    }

    // The noise predictor, guided by the options' scale when there is a condition.
    private Denoiser DenoiserFor(GenerationOptions options, ConditionBatch? onDevice) => DenoiserFor(options.GuidanceScale, options.ForwardBatchSize, onDevice);

    private Denoiser DenoiserFor(double guidanceScale, int forwardBatchSize, ConditionBatch? onDevice)
        => onDevice is null ? AsDenoiser(forwardBatchSize) : AsDenoiser(onDevice, guidanceScale, forwardBatchSize);

    // The reverse process from x (at the sampler's step startIndex), clamped to [−1, 1] and moved out of the caller's scope.
    private static Tensor SampleClamped(Denoiser denoiser, IDiffusionSampler sampler, Tensor x, int steps, NoiseSource? noise,
        Action<int, int>? onStep, CancellationToken cancellationToken, int startIndex = 0)
    {
        using var result = SamplingLoop.Run(denoiser, sampler, x, steps, noise, onStep, cancellationToken, startIndex);
        return result.clamp(-1.0, 1.0).MoveToOuterDisposeScope();
    }

    // Spherical linear interpolation between two noise tensors (Shoemake 1985), falling back to a straight line when they are nearly parallel.
    private static Tensor Slerp(Tensor a, Tensor b, double t)
    {
        if (t == 0) return a.clone();
        if (t == 1) return b.clone();
        double dot = (a * b).sum().item<float>() / (a.norm().item<float>() * b.norm().item<float>());
        double theta = Math.Acos(Math.Clamp(dot, -1.0, 1.0));
        if (theta < 1e-4) return (1 - t) * a + t * b;
        double s = Math.Sin(theta);
        return Math.Sin((1 - t) * theta) / s * a + Math.Sin(t * theta) / s * b;
    }

    // One condition per image, of the kind the network takes.
    private void CheckCondition(ConditionBatch? condition, long count)
    {
        if (condition is null) return;
        if (!Network.IsConditional) throw new ArgumentException("This model is unconditional; it takes no condition.", nameof(condition));
        if (condition.Count != count) throw new ArgumentException($"There are {condition.Count} conditions for {count} images.", nameof(condition));
        condition.Validate(NetworkOptions.Condition);
    }

    /// <summary>An independent copy of this model on <paramref name="device"/>, owned by the caller.</summary>
    internal DiffusionModel CopyTo(Device device)
    {
        using var buffer = new MemoryStream();
        Save(buffer);
        buffer.Position = 0;
        return Load(buffer, device, "A copy of the model");
    }

    /// <summary>
    /// The scheduler configuration of the diffusers folder the model came from (or of the model it was fine-tuned from);
    /// <see cref="SaveDiffusers"/> writes it back unchanged. Null for models trained here.
    /// </summary>
    internal string? DiffusersScheduler { get; set; }

    /// <summary>The model's checkpoint bytes' header.</summary>
    internal CheckpointHeader Header => new() { Network = NetworkOptions, Schedule = ScheduleOptions, Prediction = Prediction, TrainingSteps = TrainingSteps, DiffusersScheduler = DiffusersScheduler };

    /// <summary>Writes the checkpoint to a stream.</summary>
    public void Save(Stream stream) => DiffusionCheckpoint.Write(stream, Header, WeightsBytes());

    /// <summary>Writes the checkpoint to a file atomically (the previous file survives a crash mid-write).</summary>
    public void Save(string path) => DiffusionCheckpoint.WriteFile(path, Header, WeightsBytes());

    /// <summary>Loads a checkpoint from a file onto <paramref name="device"/> (default: <see cref="DiffusionDevice.Resolve"/>).</summary>
    public static DiffusionModel Load(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint file '{path}' does not exist.", path);
        using var fs = File.OpenRead(path);
        return Load(fs, device, $"Checkpoint file '{path}'");
    }

    /// <summary>Loads a checkpoint from a stream; <paramref name="source"/> names it in error messages.</summary>
    public static DiffusionModel Load(Stream stream, Device? device = null, string source = "The checkpoint")
    {
        DiffusionDevice.EnsureInitialized();   // native settings before the header's network is built
        var (header, weights) = DiffusionCheckpoint.Read(stream, source);
        device ??= DiffusionDevice.Resolve();
        var network = NoisePredictors.Create(header.Network);
        try
        {
            var state = header.FormatVersion >= 2 ? SafeTensors.Read(weights, source) : LegacyWeights.Read(weights, header.Network, source);
            try
            {
                ModuleWeights.Load(network, state, source);
            }
            finally
            {
                foreach (var t in state.Values) t.Dispose();
            }
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.to(device);
        return new DiffusionModel(network, header.Schedule, header.Prediction, header.TrainingSteps) { DiffusersScheduler = header.DiffusersScheduler };
    }

    /// <summary>
    /// Loads a Hugging Face diffusers model folder: a <c>UNet2DModel</c> (<c>config.json</c> with
    /// <c>diffusion_pytorch_model.safetensors</c> or <c>.bin</c>, in float32, float16 or bfloat16) at the top or in a
    /// <c>unet</c> subfolder, and the noise schedule and prediction type of its <c>scheduler_config.json</c> (top or
    /// <c>scheduler</c> subfolder; DDPMScheduler, DDIMScheduler or DPMSolverMultistepScheduler). The weights go to
    /// <paramref name="device"/> (default: <see cref="DiffusionDevice.Resolve"/>). <see cref="GenerationOptions.FromDiffusers"/>
    /// gives the sampler settings that reproduce the scheduler. Errors name the file and the field or tensor; a folder that
    /// lacks files names all of them.
    /// </summary>
    public static DiffusionModel LoadDiffusers(string folder, Device? device = null) => Interchange.Diffusers.DiffusersPipelineFolder.Load(folder, device);

    /// <summary>
    /// Writes the model as a diffusers pipeline folder that <c>DDPMPipeline.from_pretrained</c> (and
    /// <c>UNet2DModel.from_pretrained</c> on its <c>unet</c> subfolder) loads: <c>model_index.json</c>,
    /// <c>unet/config.json</c>, <c>unet/diffusion_pytorch_model.safetensors</c> (float32) and
    /// <c>scheduler/scheduler_config.json</c>: the scheduler of the diffusers folder the model came from, unchanged, or
    /// for a model trained here a DDPMScheduler with its schedule and prediction type. Only a diffusers
    /// <see cref="Networks.Diffusers.UNet2DModelNoisePredictor"/> can be written; files are replaced atomically.
    /// </summary>
    public void SaveDiffusers(string folder) => Interchange.Diffusers.DiffusersPipelineFolder.Save(this, folder);

    private byte[] WeightsBytes() => ModuleWeights.Save(Network);

    /// <inheritdoc/>
    public void Dispose() => Network.Dispose();
}
