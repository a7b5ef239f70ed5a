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
}
