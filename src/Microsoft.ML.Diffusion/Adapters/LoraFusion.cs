using System.Runtime.CompilerServices;
using Microsoft.ML.Diffusion.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// The LoRAs fused into one model's weights. Fusing adds scale · (alpha/rank) · up @ down to each weight a LoRA names
/// (so sampling costs nothing extra); the first time a weight is touched its original values are copied (on the CPU),
/// and unfusing a LoRA rebuilds each of its weights from that copy plus the deltas of the LoRAs still fused, in the
/// order they were fused. So the weights after unfusing are those the remaining LoRAs give fused onto the original
/// weights, and, once no LoRA touches a weight, bit for bit the original (subtracting the delta again would not be,
/// in floating point). The cost is one CPU copy of every weight some fused LoRA touches, plus each LoRA's factors.
/// </summary>
internal sealed class LoraFusion
{
    private static readonly ConditionalWeakTable<DiffusionModel, LoraFusion> Fusions = new();

    private readonly DiffusionModel _model;
    private readonly Dictionary<string, (Parameter Weight, Tensor Original)> _originals = new(StringComparer.Ordinal);
    private readonly List<FusedLora> _fused = new();
    private readonly object _lock = new();

    private LoraFusion(DiffusionModel model) => _model = model;

    /// <summary>The fusion state of <paramref name="model"/> (created on first use, kept as long as the model lives).</summary>
    public static LoraFusion Of(DiffusionModel model) => Fusions.GetValue(model, m => new LoraFusion(m));

    /// <summary>The LoRAs fused now, in the order they were fused.</summary>
    public IReadOnlyList<FusedLora> Fused
    {
        get { lock (_lock) return [.. _fused]; }
    }

    /// <summary>Bytes of original weights kept to unfuse exactly.</summary>
    public long OriginalBytes
    {
        get { lock (_lock) return _originals.Values.Sum(s => s.Original.NumberOfElements * s.Original.ElementSize); }
    }

    /// <summary>Adds each target's delta at <paramref name="scale"/> to its weight; the returned handle unfuses it.</summary>
    public FusedLora Fuse(LoraAdapter adapter, IReadOnlyList<LoraTarget> targets, double scale, string path)
    {
        var lora = new FusedLora(this, adapter, targets, scale, path);
        lock (_lock)
        {
            using var noGrad = no_grad();
            var touched = new List<string>();
            try
            {
                foreach (var target in targets)
                {
                    if (!_originals.ContainsKey(target.Key)) _originals[target.Key] = (target.Weight, CpuCopy(target.Weight));
                    touched.Add(target.Key);
                    Add(target, scale);
                }
            }
            catch
            {
                Rebuild(touched);
                throw;
            }
            _fused.Add(lora);
            _model.FusedAdapters = _fused.Count;
        }
        return lora;
    }

    /// <summary>
    /// Fuses copies of the LoRAs fused now, in their order and at their scales, into <paramref name="other"/>: a copy of
    /// this model, whose weights the LoRAs touch are first set back to the originals, or a fresh load of its base. The
    /// handles returned are <paramref name="other"/>'s; on failure nothing stays fused into it.
    /// </summary>
    public IReadOnlyList<FusedLora> CopyInto(DiffusionModel other)
    {
        var copies = new List<(FusedLora Lora, LoraAdapter Adapter, IReadOnlyList<LoraTarget> Targets)>();
        var done = new List<FusedLora>();
        try
        {
            lock (_lock)
            {
                foreach (var lora in _fused)
                {
                    var adapter = lora.Adapter.Clone();
                    try
                    {
                        copies.Add((lora, adapter, LoraTargets.Resolve(other, adapter)));
                    }
                    catch
                    {
                        adapter.Dispose();
                        throw;
                    }
                }
                using var noGrad = no_grad();
                foreach (var target in copies.SelectMany(c => c.Targets))
                    if (_originals.TryGetValue(target.Key, out var saved)) target.Weight.copy_(saved.Original);
            }
            var fusion = Of(other);
            foreach (var (lora, adapter, targets) in copies)
            {
                done.Add(fusion.Fuse(adapter, targets, lora.Scale, lora.Path));
            }
            return done;
        }
        catch
        {
            foreach (var lora in done) lora.Dispose();
            foreach (var (_, adapter, _) in copies.Skip(done.Count)) adapter.Dispose();
            throw;
        }
    }

    /// <summary>Takes <paramref name="lora"/> out of the weights (nothing if it is not fused).</summary>
    public void Unfuse(FusedLora lora)
    {
        lock (_lock)
        {
            if (!_fused.Remove(lora)) return;
            _model.FusedAdapters = _fused.Count;
            using var noGrad = no_grad();
            Rebuild(lora.Targets.Select(t => t.Key).ToList());
        }
    }

    // Each weight from its original plus the deltas of the LoRAs fused now that touch it, in their order; a weight no
    // fused LoRA touches gets its original bytes back and its copy is let go.
    private void Rebuild(IReadOnlyList<string> keys)
    {
        foreach (string key in keys)
        {
            if (!_originals.TryGetValue(key, out var saved)) continue;
            saved.Weight.copy_(saved.Original);
            bool touched = false;
            foreach (var lora in _fused)
            {
                foreach (var target in lora.Targets.Where(t => t.Key == key))
                {
                    Add(target, lora.Scale);
                    touched = true;
                }
            }
            if (!touched)
            {
                saved.Original.Dispose();
                _originals.Remove(key);
            }
        }
    }

    private static void Add(LoraTarget target, double scale)
    {
        using var scope = NewDisposeScope();
        var weight = target.Weight;
        using var delta = target.Layer.Delta(weight, scale);
        if (weight.dtype == ScalarType.Float32) weight.add_(delta);
        else weight.copy_((weight.to(ScalarType.Float32) + delta).to(weight.dtype));
    }

    private static Tensor CpuCopy(Tensor weight)
    {
        var copy = weight.device_type == TorchSharp.DeviceType.CPU ? weight.detach().clone() : weight.detach().cpu();
        return copy.DetachFromDisposeScope();
    }
}
