using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>A weight a LoRA layer updates: its key ('unet.' or 'text_encoder.' and the parameter's name) and the parameter.</summary>
internal sealed record LoraTarget(string Key, Parameter Weight, LoraLayer Layer);

/// <summary>
/// Finds the weight each layer of a LoRA updates in a Stable Diffusion model, by the model's own parameter names: dotted
/// names directly, Kohya's underscored ones by the underscored form of every weight the network has (so
/// 'down_blocks_0_attentions_0_proj_in' finds 'down_blocks.0.attentions.0.proj_in' whatever the module). Every layer
/// must find a weight its factors fit, or nothing is applied.
/// </summary>
internal static class LoraTargets
{
    public static IReadOnlyList<LoraTarget> Resolve(DiffusionModel model, LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adapter);
        // The noise predictor's layers by diffusers' names (a Stable Diffusion UNet's without the predictor's 'unet.').
        var unet = new Network("unet", LoraNetwork.AdaptedModule(model.Network));
        var text = model.Prompts is null ? null : new Network("text_encoder", model.Prompts.TextModel);

        var targets = new List<LoraTarget>();
        var unmatched = new List<string>();
        foreach (var layer in adapter.Layers)
        {
            var network = layer.Component switch
            {
                LoraComponent.UNet => unet,
                LoraComponent.TextEncoder => text,
                _ => unet.Find(layer.Module, adapter.Layout) is not null ? unet : text,
            };
            var found = network?.Find(layer.Module, adapter.Layout);
            if (network is null || found is null)
            {
                unmatched.Add(layer.Source);
                continue;
            }
            var (name, weight) = found.Value;
            CheckFits(adapter, layer, name, weight);
            targets.Add(new LoraTarget($"{network.Prefix}.{name}", weight, layer));
        }
        if (unmatched.Count > 0)
        {
            string texts = text is null && adapter.Layers.Any(l => l.Component == LoraComponent.TextEncoder) ? " (the model has no text encoder)" : "";
            throw new CheckpointFormatException(
                $"{adapter.Source} does not fit this model: {unmatched.Count} of its {adapter.Layers.Count} LoRA layers match no layer of the model{texts}: " +
                $"{LoraAdapter.List(unmatched)}. The model's layers are named like '{unet.Example}' (UNet)" +
                (text is null ? "" : $" and '{text.Example}' (text encoder)") + "; is the LoRA for another model family (SDXL, SD 3) or another network?");
        }
        var twice = targets.GroupBy(t => t.Key).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new CheckpointFormatException($"{adapter.Source} updates '{twice.Key}' twice: {string.Join(" and ", twice.Select(t => $"'{t.Layer.Source}'"))}.");
        return targets;
    }

    private static void CheckFits(LoraAdapter adapter, LoraLayer layer, string name, Parameter weight)
    {
        long inputs = weight.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        long downInputs = layer.Down.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        if (weight.shape.Length < 2 || layer.Up.shape[0] != weight.shape[0] || downInputs != inputs
            || (layer.Down.shape.Length == 4 && weight.shape.Length == 4 && !layer.Down.shape.Skip(2).SequenceEqual(weight.shape.Skip(2))))
            throw new CheckpointFormatException(
                $"{adapter.Source} does not fit this model: LoRA layer '{layer.Source}' (down [{string.Join(", ", layer.Down.shape)}], up [{string.Join(", ", layer.Up.shape)}]) " +
                $"cannot update '{name}' of shape [{string.Join(", ", weight.shape)}].");
    }

    // A network's weights by module name, and by Kohya's underscored module name.
    private sealed class Network
    {
        private readonly Dictionary<string, Parameter> _weights = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string?> _underscored = new(StringComparer.Ordinal);   // null: two modules share the form

        public Network(string prefix, TorchSharp.torch.nn.Module module)
        {
            Prefix = prefix;
            foreach (var (name, parameter) in module.named_parameters())
            {
                if (!name.EndsWith(".weight", StringComparison.Ordinal) || parameter.shape.Length < 2) continue;
                string moduleName = name[..^".weight".Length];
                _weights[moduleName] = parameter;
                string underscored = moduleName.Replace('.', '_');
                _underscored[underscored] = _underscored.ContainsKey(underscored) ? null : moduleName;
            }
        }

        public string Prefix { get; }

        /// <summary>A layer name for messages: an attention projection when there is one.</summary>
        public string Example => _weights.Keys.FirstOrDefault(k => k.EndsWith("to_q", StringComparison.Ordinal) || k.EndsWith("q_proj", StringComparison.Ordinal) || k.EndsWith("qkv", StringComparison.Ordinal))
            ?? _weights.Keys.FirstOrDefault() ?? "";

        public (string Name, Parameter Weight)? Find(string module, LoraLayout layout)
        {
            string? name = module;
            if (layout == LoraLayout.Kohya && !_underscored.TryGetValue(module, out name)) return null;
            if (name is null)
                throw new CheckpointFormatException($"The Kohya LoRA name '{module}' fits more than one module of the {Prefix} network.");
            return _weights.TryGetValue(name, out var weight) ? (name + ".weight", weight) : null;
        }
    }
}
