using System.Runtime.CompilerServices;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// Trainable LoRA adapters attached to the Linear and Conv2d layers of a network chosen by name
/// (<see cref="LoraTrainingOptions.TargetModules"/>), and the module that holds them, so an optimiser, an EMA or a
/// state file sees the adapters' parameters and nothing else.
/// </summary>
/// <remarks>
/// Each adapter runs as a forward hook of its layer, adding scale · up(down(x)) to the layer's output. Hooks were chosen
/// over replacing modules or LoRA-aware layer types: the network keeps its own modules, parameter names, initialisation
/// and state files (TorchSharp's Linear and Conv2d are sealed, and a registered submodule cannot be swapped under its
/// name); without an adapter nothing is added, and inference costs a look at an empty hook list per layer. The price:
/// a layer runs its hooks only when the network calls it with <c>call()</c> rather than <c>forward()</c>, as the
/// library's networks do for every layer an adapter can target. An adapter whose layer never ran is found after the
/// first training step (<see cref="NotRun"/>) rather than silently left untrained.
/// </remarks>
internal sealed class LoraNetwork : nn.Module
{
    // The modules adapters are attached to now: two sets on one network would both add their outputs.
    private static readonly ConditionalWeakTable<nn.Module, LoraNetwork> Adapted = new();

    private readonly ModuleList<LoraModule> layers;
    private readonly List<string> _names;
    private readonly List<Action> _removeHooks = new();
    private nn.Module? _adapted;

    // The adapters are registered here, complete: a ModuleList registers only what it holds when its owner registers it.
    private LoraNetwork(List<string> names, List<LoraModule> adapters, double? alpha) : base(nameof(LoraNetwork))
    {
        _names = names;
        layers = new ModuleList<LoraModule>([.. adapters]);
        Alpha = alpha;
        RegisterComponents();
    }

    /// <summary>The adapted layers' names in the adapted module (diffusers' names for diffusers UNets).</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The adapters, in the order of <see cref="Names"/>.</summary>
    public IReadOnlyList<LoraModule> Layers => [.. layers];

    /// <summary>The alpha of the options the adapters were made with (null: alpha = rank).</summary>
    public double? Alpha { get; }

    /// <summary>
    /// The module of <paramref name="network"/> whose layer names LoRA files use: the diffusers UNet inside a Stable
    /// Diffusion noise predictor, the network itself otherwise.
    /// </summary>
    public static nn.Module AdaptedModule(NoisePredictor network) => network is UNet2DConditionNoisePredictor sd ? sd.UNet : network;

    /// <summary>
    /// Creates adapters for the layers of <paramref name="module"/> that <paramref name="options"/> name and attaches them
    /// as forward hooks. New adapters draw down from torch's global generator and change nothing until trained.
    /// </summary>
    /// <exception cref="ArgumentException">The options name no layer, or a name matches only layers LoRA cannot adapt; the message lists some of the network's layers.</exception>
    public static LoraNetwork Attach(nn.Module module, LoraTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var targets = Targets(module, options);
        if (Adapted.TryGetValue(module, out _))
            throw new ArgumentException($"The network ({module.GetType().Name}) already has LoRA adapters attached (by another trainer); dispose that trainer first.", nameof(module));
        var adapters = new List<LoraModule>(targets.Count);
        try
        {
            foreach (var (_, layer) in targets) adapters.Add(new LoraModule(layer, options.Rank, options.Scale));
        }
        catch
        {
            foreach (var adapter in adapters) adapter.Dispose();
            throw;
        }
        var network = new LoraNetwork([.. targets.Select(t => t.Name)], adapters, options.Alpha);
        Adapted.Add(module, network);
        network._adapted = module;
        foreach (var ((_, layer), adapter) in targets.Zip(adapters))
        {
            var hook = layer.register_forward_hook((_, input, output) => output + adapter.forward(input));
            network._removeHooks.Add(hook.remove);
        }
        return network;
    }

    /// <summary>Adapters of the same shapes, not attached to any layer (for an average of the weights).</summary>
    public LoraNetwork DetachedCopy()
    {
        return new LoraNetwork([.. _names], [.. layers.Select(l => new LoraModule(l))], Alpha);
    }

    /// <summary>The adapters whose layers have not run since they were attached (their network does not call them through call()).</summary>
    public IReadOnlyList<string> NotRun() => [.. _names.Zip(layers).Where(p => !p.Second.HasRun).Select(p => p.First)];

    /// <summary>Copies of the adapters' factors as LoRA layers of <paramref name="component"/>, for fusing or saving.</summary>
    public List<LoraLayer> ToLayers(LoraComponent component)
    {
        var result = new List<LoraLayer>(layers.Count);
        using var noGrad = no_grad();
        foreach (var (name, layer) in _names.Zip(layers))
        {
            var down = layer.Down.detach().cpu().clone().DetachFromDisposeScope();
            var up = layer.Up.detach().cpu().clone().DetachFromDisposeScope();
            result.Add(new LoraLayer(component, name, name, down, up, Alpha));
        }
        return result;
    }

    /// <summary>Takes the adapters off their layers (they keep their weights).</summary>
    public void Detach()
    {
        foreach (var remove in _removeHooks) remove();
        _removeHooks.Clear();
        if (_adapted is not null) Adapted.Remove(_adapted);
        _adapted = null;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Detach();
        base.Dispose(disposing);
    }

    // The layers the options name, in the module's order, each once.
    private static List<(string Name, Module<Tensor, Tensor> Layer)> Targets(nn.Module module, LoraTrainingOptions options)
    {
        var all = module.named_modules().ToList();
        var adaptable = all.Where(m => m.module is TorchSharp.Modules.Linear or TorchSharp.Modules.Conv2d).Select(m => (m.name, Layer: (Module<Tensor, Tensor>)m.module)).ToList();
        static bool Matches(string name, string pattern) => name == pattern || name.EndsWith("." + pattern, StringComparison.Ordinal);

        IReadOnlyList<string> patterns;
        if (options.TargetModules is { } given)
        {
            foreach (string pattern in given)
            {
                if (adaptable.Any(m => Matches(m.name, pattern))) continue;
                var other = all.Where(m => Matches(m.name, pattern)).ToList();
                if (other.Count > 0)
                    throw new ArgumentException($"The LoRA target '{pattern}' names {other.Count} modules, such as '{other[0].name}', of kind {string.Join(", ", other.Select(m => m.module.GetType().Name).Distinct())}, " +
                        $"but LoRA adapts Linear and Conv2d layers only. {Describe(module, adaptable)}", nameof(options));
                throw new ArgumentException($"The LoRA target '{pattern}' matches no layer of the network. {Describe(module, adaptable)}", nameof(options));
            }
            patterns = given;
        }
        else
        {
            patterns = adaptable.Any(m => LoraTrainingOptions.DiffusersAttention.Any(p => Matches(m.name, p))) ? LoraTrainingOptions.DiffusersAttention
                : adaptable.Any(m => LoraTrainingOptions.LibraryAttention.Any(p => Matches(m.name, p))) ? LoraTrainingOptions.LibraryAttention
                : throw new ArgumentException("The network has no attention projections to adapt (diffusers' to_q, to_k, to_v, to_out.0 or the library UNet's " +
                    $"attention.qkv, attention.projection…); name the layers in LoraTrainingOptions.TargetModules. {Describe(module, adaptable)}", nameof(options));
        }
        return adaptable.Where(m => patterns.Any(p => Matches(m.name, p))).ToList();
    }

    // A few of the network's adaptable layers, by full name and by the short names a target can use.
    private static string Describe(nn.Module module, List<(string Name, Module<Tensor, Tensor> Layer)> adaptable)
    {
        if (adaptable.Count == 0) return $"The network ({module.GetType().Name}) has no Linear or Conv2d layers.";
        var shortNames = adaptable.Select(m => ShortName(m.Name)).Distinct().ToList();
        return $"Its {adaptable.Count} Linear and Conv2d layers are named like {LoraAdapter.List(adaptable.Select(m => m.Name).Where((_, i) => i % Math.Max(1, adaptable.Count / 5) == 0).Take(5).ToList())}; " +
            $"their last names are {string.Join(", ", shortNames.Take(16).Select(n => $"'{n}'"))}{(shortNames.Count > 16 ? $" and {shortNames.Count - 16} more" : "")}.";
    }

    // "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0" → "to_out.0"; "….attention.qkv" → "qkv".
    private static string ShortName(string name)
    {
        var parts = name.Split('.');
        return parts.Length >= 2 && parts[^1].All(char.IsDigit) ? $"{parts[^2]}.{parts[^1]}" : parts[^1];
    }
}
