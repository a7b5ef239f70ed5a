namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// Settings of a LoRA training run: which layers of the network get a trainable low-rank adapter, of what rank and alpha.
/// Each adapted layer computes W·x + b + (alpha / rank) · up(down(x)), with down (rank × in) drawn from N(0, 1/rank²)
/// and up (out × rank) zero, so training starts from the unchanged network (diffusers' LoRALinearLayer). The network's
/// own weights are frozen; only down and up train.
/// </summary>
public sealed record LoraTrainingOptions
{
    /// <summary>The adapters' rank r: the width of the bottleneck between down and up (4 is diffusers' default).</summary>
    public int Rank { get; set; } = 4;

    /// <summary>
    /// The update is scaled by alpha / rank (Kohya's network alpha); null means alpha = rank, a scale of 1 (diffusers').
    /// Saved files hold the scale multiplied into up, since diffusers' layout has no alpha.
    /// </summary>
    public double? Alpha { get; set; }

    /// <summary>
    /// Which Linear and Conv2d layers get adapters, by name: a layer matches an entry when its dotted name is the entry or
    /// ends with "." and the entry (PEFT's rule), so "to_q" finds every "…attn1.to_q". Null adapts the attention
    /// projections: diffusers' <c>to_q</c>, <c>to_k</c>, <c>to_v</c>, <c>to_out.0</c> (UNet2DModel and Stable Diffusion
    /// UNets), or the library UNet's <c>attention.qkv</c>, <c>attention.projection</c>, <c>cross_attention.query</c>,
    /// <c>cross_attention.key_value</c>, <c>cross_attention.projection</c>. Add feed-forward and convolution layers by
    /// naming them, e.g. diffusers' <c>ff.net.0.proj</c>, <c>ff.net.2</c>, <c>proj_in</c>, <c>proj_out</c>,
    /// <c>conv1</c>, <c>conv2</c>. Every entry must match at least one layer.
    /// </summary>
    public IReadOnlyList<string>? TargetModules { get; set; }

    /// <summary>The attention projections of diffusers' UNets, adapted when <see cref="TargetModules"/> is null.</summary>
    internal static readonly string[] DiffusersAttention = ["to_q", "to_k", "to_v", "to_out.0"];

    /// <summary>The attention projections of the library's UNet, adapted when <see cref="TargetModules"/> is null.</summary>
    internal static readonly string[] LibraryAttention =
        ["attention.qkv", "attention.projection", "cross_attention.query", "cross_attention.key_value", "cross_attention.projection"];

    /// <summary>The scale of the adapters' output: alpha / rank.</summary>
    internal double Scale => (Alpha ?? Rank) / Rank;

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "The LoRA rank must be at least 1.");
        if (Alpha is { } alpha && !(double.IsFinite(alpha) && alpha > 0))
            throw new ArgumentOutOfRangeException(nameof(Alpha), alpha, "The LoRA alpha must be positive and finite (or null for alpha = rank).");
        if (TargetModules is { } targets)
        {
            if (targets.Count == 0) throw new ArgumentException("TargetModules is empty; name at least one layer (or leave it null for the attention projections).", nameof(TargetModules));
            var blank = targets.FirstOrDefault(t => string.IsNullOrWhiteSpace(t) || t.StartsWith('.') || t.EndsWith('.'));
            if (targets.Any(t => t is null) || blank is not null)
                throw new ArgumentException($"TargetModules holds an unusable layer name ('{blank}'); give dotted names such as \"to_q\" or \"ff.net.2\".", nameof(TargetModules));
        }
    }

    // A copy whose list later changes to the caller's options do not reach.
    internal LoraTrainingOptions Snapshot() => this with { TargetModules = TargetModules?.ToArray() };
}
