using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// One low-rank update of a LoRA file: down (rank, in[, kh, kw]) and up (out, rank[, 1, 1]) factors and the optional
/// network alpha. <see cref="Module"/> is the module's name as the file gives it (dotted, or Kohya's underscored form);
/// <see cref="Source"/> is the file's name for the layer, for messages. The layer owns its tensors (float32, CPU).
/// </summary>
internal sealed class LoraLayer : IDisposable
{
    public LoraLayer(LoraComponent component, string module, string source, Tensor down, Tensor up, double? alpha)
    {
        Component = component;
        Module = module;
        Source = source;
        Down = down;
        Up = up;
        Alpha = alpha;
    }

    public LoraComponent Component { get; }

    public string Module { get; }

    public string Source { get; }

    public Tensor Down { get; }

    public Tensor Up { get; }

    /// <summary>Kohya's network alpha: the update is multiplied by alpha / rank (null: by 1).</summary>
    public double? Alpha { get; }

    public long Rank => Down.shape[0];

    /// <summary>
    /// scale · (alpha / rank) · up @ down in float32, shaped as <paramref name="weight"/> and on its device, as diffusers'
    /// <c>_fuse_lora</c> computes it (alpha on up first, then the product, then the scale).
    /// </summary>
    public Tensor Delta(Tensor weight, double scale)
    {
        using var scope = NewDisposeScope();
        var up = Up.to(weight.device).flatten(1);
        if (Alpha is { } alpha) up = up * (alpha / Rank);
        var delta = up.mm(Down.to(weight.device).flatten(1)).reshape(weight.shape) * scale;
        return delta.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Down.Dispose();
        Up.Dispose();
    }
}
