using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// What a Stable Diffusion UNet trains on: images encoded by the model's frozen autoencoder (latent mean or a seeded
/// sample, times its scaling factor, as diffusers' <c>train_text_to_image.py</c>) and captions encoded by its frozen text
/// encoder. Both run in eval mode without gradients and are never given to an optimiser. Latents added with
/// <see cref="Add"/> are kept on the device for every epoch; each distinct caption's states are computed once and kept
/// while they fit in <see cref="PromptCacheBytes"/>, and computed per batch beyond that.
/// </summary>
internal sealed class LatentTrainingSet : IDisposable
{
    /// <summary>Device memory the caption states may take (SD 1.x: 77 × 768 floats, 236 KB a caption; about 1,100 captions).</summary>
    public const long PromptCacheBytes = 256L << 20;

    /// <summary>Images the autoencoder encodes at once (its activations at 512 × 512 take about 1 GB an image).</summary>
    public const int EncodeChunk = 4;

    private readonly DiffusionModel _model;
    private readonly Device _device;
    private readonly bool _sampleLatents;
    private readonly Generator _latentGenerator;
    private readonly Action<string>? _onWarning;
    private readonly Dictionary<string, Tensor> _prompts = new(StringComparer.Ordinal);
    private readonly List<Tensor> _latentChunks = [];
    private readonly List<string> _captions = [];
    private long _promptBytes;
    private Tensor? _latents;

    /// <param name="model">A Stable Diffusion model (autoencoder and prompt encoder).</param>
    /// <param name="device">Where the latents and states are kept (the model's device).</param>
    /// <param name="sampleLatents">Sample the latent distribution (true) or take its mean.</param>
    /// <param name="seed">Seeds the latent samples.</param>
    /// <param name="onWarning">Hears of captions cut to the text encoder's length.</param>
    public LatentTrainingSet(DiffusionModel model, Device device, bool sampleLatents, int seed, Action<string>? onWarning = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (model.Autoencoder is null || model.Prompts is null)
            throw new ArgumentException("Latent training needs a Stable Diffusion model: an autoencoder and a text encoder.", nameof(model));
        _device = device;
        _sampleLatents = sampleLatents;
        _latentGenerator = new Generator(unchecked((ulong)seed), CPU);
        _onWarning = onWarning;
        // Frozen: inference behaviour, whatever mode the caller left them in.
        model.Autoencoder.eval();
        model.Prompts.TextModel.eval();
    }

    /// <summary>Rows added so far.</summary>
    public long Count => _captions.Count;

    /// <summary>Distinct captions whose states are kept.</summary>
    public int CachedPrompts => _prompts.Count;

    /// <summary>
    /// The scaled latents (N, latent channels, H/f, W/f) of images (N, C, H, W) in [−1, 1]. NaN or infinite latents (an
    /// autoencoder whose weights or precision fail on these images) are refused naming <paramref name="rows"/>.
    /// </summary>
    public Tensor Encode(Tensor images, string rows)
    {
        var vae = _model.Autoencoder!;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += EncodeChunk)
        {
            var chunk = images.narrow(0, start, Math.Min(EncodeChunk, images.shape[0] - start)).to(_device);
            using var distribution = vae.Encode(chunk);
            var latents = _sampleLatents ? distribution.Sample(_latentGenerator) : distribution.Mode();
            parts.Add(latents.mul_(vae.ScalingFactor));
        }
        var all = parts.Count == 1 ? parts[0] : cat(parts, 0);
        if (!isfinite(all).all().item<bool>())
            throw new InvalidOperationException($"The autoencoder encoded {rows} to NaN or infinite latents; check the images and the autoencoder's weights.");
        return all.MoveToOuterDisposeScope();
    }

    /// <summary>Encodes images (N, C, H, W) in [−1, 1] and keeps their latents with their captions for every epoch.</summary>
    public void Add(Tensor images, IReadOnlyList<string> captions, string rows)
    {
        if (_latents is not null) throw new InvalidOperationException("The training set is complete.");
        if (images.shape[0] != captions.Count) throw new ArgumentException($"{images.shape[0]} images but {captions.Count} captions.", nameof(captions));
        _latentChunks.Add(Encode(images, rows).DetachFromDisposeScope());
        _captions.AddRange(captions);
    }

    /// <summary>Every latent added, (N, c, h, w) on the device.</summary>
    public Tensor Latents
    {
        get
        {
            if (_latents is null)
            {
                if (_latentChunks.Count == 0) throw new InvalidOperationException("The training set is empty.");
                using (NewDisposeScope())
                    _latents = (_latentChunks.Count == 1 ? _latentChunks[0].alias() : cat(_latentChunks, 0)).MoveToOuterDisposeScope().DetachFromDisposeScope();
                foreach (var chunk in _latentChunks) chunk.Dispose();
                _latentChunks.Clear();
            }
            return _latents;
        }
    }

    /// <summary>The batch of rows <paramref name="indices"/> (CPU int64) of the kept latents, its captions dropped to "" with probability <paramref name="captionDropout"/>.</summary>
    public DiffusionTrainer.StepBatch Batch(Tensor indices, Generator generator, double captionDropout)
    {
        var rows = indices.data<long>().ToArray();
        var latents = Latents.index_select(0, indices.to(_device));
        return new DiffusionTrainer.StepBatch(latents, Prompts(rows.Select(r => _captions[(int)r]).ToList(), generator, captionDropout), null);
    }

    /// <summary>
    /// The states (N, 77, D) of <paramref name="captions"/> as a prompt condition; each caption becomes the empty prompt with
    /// probability <paramref name="captionDropout"/>, drawn from <paramref name="generator"/> (the trainer's, so a resumed run draws alike).
    /// </summary>
    public ConditionBatch Prompts(IReadOnlyList<string> captions, Generator generator, double captionDropout)
    {
        var used = captions;
        if (captionDropout > 0)
        {
            using var draws = rand(captions.Count, generator: generator);
            var drop = draws.data<float>().ToArray();
            used = captions.Select((c, i) => drop[i] < captionDropout ? "" : c).ToList();
        }
        using var scope = NewDisposeScope();
        var missing = used.Distinct(StringComparer.Ordinal).Where(c => !_prompts.ContainsKey(c)).ToList();
        var fresh = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        if (missing.Count > 0)
        {
            var states = _model.Prompts!.Encode(missing, _device, _onWarning);
            long each = states.shape[1] * states.shape[2] * sizeof(float);
            for (int i = 0; i < missing.Count; i++)
            {
                var row = states[i];
                if (_promptBytes + each <= PromptCacheBytes)
                {
                    _prompts[missing[i]] = row.clone().DetachFromDisposeScope();
                    _promptBytes += each;
                }
                else
                {
                    fresh[missing[i]] = row;
                }
            }
        }
        var batch = stack(used.Select(c => _prompts.TryGetValue(c, out var kept) ? kept : fresh[c]).ToList(), 0);
        return ConditionBatch.PromptStates(batch);
    }

    public void Dispose()
    {
        foreach (var chunk in _latentChunks) chunk.Dispose();
        _latents?.Dispose();
        foreach (var states in _prompts.Values) states.Dispose();
        _latentGenerator.Dispose();
    }
}
