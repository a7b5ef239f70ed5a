using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>A module's state (parameters and persistent buffers) to and from safetensors bytes, by name, with errors that name the tensor.</summary>
internal static class ModuleWeights
{
    /// <summary>The module's state as safetensors bytes, in the module's order.</summary>
    public static byte[] Save(Module module) => SafeTensors.Write(module.state_dict().Select(kv => (kv.Key, kv.Value)));

    /// <summary>Copies <paramref name="weights"/> into <paramref name="module"/>: every name must be present with the module's shape; values must be finite.</summary>
    public static void Load(Module module, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var state = module.state_dict();
        var missing = state.Keys.Where(k => !weights.ContainsKey(k)).ToArray();
        if (missing.Length > 0) throw new CheckpointFormatException($"{source} has weights that do not fit the network its header describes: it lacks {string.Join(", ", missing.Take(5))}{(missing.Length > 5 ? $" and {missing.Length - 5} more" : "")}.");
        var unexpected = weights.Keys.Where(k => !state.ContainsKey(k)).ToArray();
        if (unexpected.Length > 0) throw new CheckpointFormatException($"{source} has weights that do not fit the network its header describes: the network has no {string.Join(", ", unexpected.Take(5))}{(unexpected.Length > 5 ? $" and {unexpected.Length - 5} more" : "")}.");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, target) in state)
        {
            var value = weights[name];
            if (!value.shape.SequenceEqual(target.shape))
                throw new CheckpointFormatException($"{source} has weights that do not fit the network its header describes: tensor '{name}' has shape [{string.Join(", ", value.shape)}] but the network expects [{string.Join(", ", target.shape)}].");
            if (value.is_floating_point() && !value.isfinite().all().item<bool>())
                throw new CheckpointFormatException($"{source} is corrupt: tensor '{name}' holds NaN or infinite values.");
            target.copy_(value);
        }
    }

    /// <summary>
    /// Copies the tensors of <paramref name="file"/> into <paramref name="module"/> one at a time, so that only the module
    /// and one tensor are in memory. Only names that start with <paramref name="prefix"/> take part (the prefix is
    /// removed); <paramref name="rename"/> then gives the module's name for each, or null to leave it out. Every module
    /// tensor must come from exactly one file tensor of its shape (or, for a 1×1 convolution's weight stored where the
    /// module has a linear layer, its shape followed by ones) with finite values; every file tensor that takes part must
    /// land in the module. Values are converted to the module's dtype. Errors name the tensors.
    /// </summary>
    public static void Load(Module module, ITensorFile file, string? prefix = null, Func<string, string?>? rename = null)
    {
        var state = module.state_dict();
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);   // module name → file name
        var unexpected = new List<string>();
        foreach (string name in file.Names)
        {
            if (prefix is not null && !name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string key = prefix is null ? name : name[prefix.Length..];
            string? target = rename is null ? key : rename(key);
            if (target is null) continue;
            if (!state.ContainsKey(target))
            {
                unexpected.Add(target == name ? name : $"{target} (from {name})");
                continue;
            }
            if (!sources.TryAdd(target, name))
                throw new CheckpointFormatException($"{file.Source} does not fit the network: tensors '{sources[target]}' and '{name}' both map to '{target}'.");
        }
        // Both sides in one message: a file under other names both lacks the network's tensors and has others.
        var missing = state.Keys.Where(k => !sources.ContainsKey(k)).ToList();
        var problems = new List<string>();
        if (missing.Count > 0) problems.Add($"it lacks {List(missing)}");
        if (unexpected.Count > 0) problems.Add($"the network has no {List(unexpected)}");
        if (problems.Count > 0)
            throw new CheckpointFormatException($"{file.Source} does not fit the network: {string.Join("; and ", problems)}.");

        using var noGrad = no_grad();
        foreach (var (target, value) in state)
        {
            string name = sources[target];
            long[] shape = file.Shape(name);
            bool squeeze = shape.Length > value.shape.Length && shape.Take(value.shape.Length).SequenceEqual(value.shape) && shape.Skip(value.shape.Length).All(d => d == 1);
            if (!shape.SequenceEqual(value.shape) && !squeeze)
                throw new CheckpointFormatException($"{file.Source} does not fit the network: tensor '{name}' has shape [{string.Join(", ", shape)}] but the network's '{target}' is [{string.Join(", ", value.shape)}].");
            using var scope = NewDisposeScope();
            using var read = file.Read(name, value.dtype);
            if (read.is_floating_point() && !read.isfinite().all().item<bool>())
                throw new CheckpointFormatException($"{file.Source} is corrupt: tensor '{name}' holds NaN or infinite values.");
            value.copy_(squeeze ? read.view(value.shape) : read);
        }
    }

    private static string List(IReadOnlyList<string> names) =>
        string.Join(", ", names.Take(5)) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");
}
