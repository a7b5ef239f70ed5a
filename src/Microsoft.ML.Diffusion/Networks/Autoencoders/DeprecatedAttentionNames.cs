using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// The attention parameter names of diffusers before 0.14 (<c>AttentionBlock</c>: query, key, value, proj_attn), which
/// VAE files of that time still carry; diffusers' loader renames them to <c>Attention</c>'s to_q, to_k, to_v,
/// to_out.0, and so does this.
/// </summary>
internal static class DeprecatedAttentionNames
{
    private static readonly (string Old, string New)[] Renames = [("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0")];

    /// <summary>
    /// The weights with every <c>….query.weight</c> (and the like) renamed where the network has the new name and the
    /// weights do not; other names are kept. The tensors are the same objects, not copies.
    /// </summary>
    public static Dictionary<string, Tensor> Rename(IReadOnlyDictionary<string, Tensor> weights, IReadOnlySet<string> networkNames)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in weights)
            result[Renamed(name, weights, networkNames) ?? name] = tensor;
        return result;
    }

    private static string? Renamed(string name, IReadOnlyDictionary<string, Tensor> weights, IReadOnlySet<string> networkNames)
    {
        foreach (var (old, replacement) in Renames)
        {
            foreach (string suffix in (string[])[".weight", ".bias"])
            {
                string tail = $".{old}{suffix}";
                if (!name.EndsWith(tail, StringComparison.Ordinal)) continue;
                string candidate = name[..^tail.Length] + $".{replacement}{suffix}";
                if (networkNames.Contains(candidate) && !weights.ContainsKey(candidate)) return candidate;
            }
        }
        return null;
    }
}
