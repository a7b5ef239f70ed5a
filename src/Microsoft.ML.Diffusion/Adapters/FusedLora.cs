namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// A LoRA fused into a model's weights at a scale (see <see cref="LoraExtensions.LoadLora"/>, or the result of training
/// one with <c>TrainDiffusion</c>).
/// <see cref="Unfuse"/> (or disposing) takes it out again exactly: each weight it touched is rebuilt from a saved copy of
/// the original plus the LoRAs still fused, so with none left the weights are bit for bit those loaded. While fused, the
/// model keeps one CPU copy, in the model's dtype, of every weight a fused LoRA touches (for a LoRA of SD 1.5's UNet
/// attention projections, about 94 million numbers: 374 MB for a float32 model, 187 MB for float16) and the LoRA's own
/// factors (a few MB).
/// </summary>
public sealed class FusedLora : IDisposable
{
    private readonly LoraFusion _fusion;
    private readonly LoraAdapter _adapter;

    internal FusedLora(LoraFusion fusion, LoraAdapter adapter, IReadOnlyList<LoraTarget> targets, double scale, string path)
    {
        _fusion = fusion;
        _adapter = adapter;
        Targets = targets;
        Scale = scale;
        Path = path;
    }

    /// <summary>
    /// The LoRA file it was loaded from (for a LoRA loaded with a model zip, the file it was first loaded from); empty for
    /// a LoRA trained in memory (<c>TrainDiffusion</c> with <c>Lora</c> options).
    /// </summary>
    public string Path { get; }

    /// <summary>The scale the LoRA's update is fused at (diffusers' <c>lora_scale</c>, A1111's weight in &lt;lora:name:weight&gt;).</summary>
    public double Scale { get; }

    /// <summary>How the file names its tensors: "diffusers", "peft" or "kohya" ("diffusers" for a trained LoRA).</summary>
    public string Layout => _adapter.Layout.ToString().ToLowerInvariant();

    /// <summary>Weights of the UNet the LoRA updates.</summary>
    public int UNetLayers => Targets.Count(t => t.Key.StartsWith("unet.", StringComparison.Ordinal));

    /// <summary>Weights of the text encoder the LoRA updates.</summary>
    public int TextEncoderLayers => Targets.Count(t => t.Key.StartsWith("text_encoder.", StringComparison.Ordinal));

    /// <summary>Whether the LoRA is in the model's weights now.</summary>
    public bool IsFused => _fusion.Fused.Contains(this);

    internal IReadOnlyList<LoraTarget> Targets { get; }

    /// <summary>The LoRA's factors (owned by this handle).</summary>
    internal LoraAdapter Adapter => _adapter;

    /// <summary>
    /// Writes the LoRA in diffusers v0.21's layout, which diffusers' <c>load_attn_procs</c> and <c>load_lora_weights</c>
    /// and <see cref="LoraExtensions.LoadLora"/> read: attention projections as save_attn_procs names them
    /// ('<c>…attn1.processor.to_q_lora.down.weight</c>'), other layers as '<c>…proj_in.lora.down.weight</c>', text-encoder
    /// layers as '<c>text_encoder.…q_proj.lora_linear_layer.down.weight</c>' (the UNet's then under '<c>unet.</c>').
    /// The factors are the LoRA's own, not multiplied by <see cref="Scale"/>; an alpha is multiplied into up, since the
    /// layout has none. <paramref name="path"/> is a file, or a folder to write <c>pytorch_lora_weights.safetensors</c>
    /// into; it is written atomically. Returns the file written.
    /// </summary>
    public string Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return DiffusersLoraFile.Write(path, Layers());
    }

    /// <summary>The bytes <see cref="Save"/> writes: a safetensors file in diffusers v0.21's layout.</summary>
    internal byte[] ToSafeTensors() => DiffusersLoraFile.Bytes(Layers());

    // Each layer under the module name of the weight it updates in this model.
    private List<(LoraComponent, string, LoraLayer)> Layers() => Targets.Select(t =>
    {
        bool text = t.Key.StartsWith("text_encoder.", StringComparison.Ordinal);
        string module = t.Key[(text ? "text_encoder.".Length : "unet.".Length)..^".weight".Length];
        return (text ? LoraComponent.TextEncoder : LoraComponent.UNet, module, t.Layer);
    }).ToList();

    /// <summary>Takes the LoRA out of the model's weights (nothing if it is already out).</summary>
    public void Unfuse()
    {
        _fusion.Unfuse(this);
    }

    /// <summary>Unfuses the LoRA and frees its factors.</summary>
    public void Dispose()
    {
        Unfuse();
        _adapter.Dispose();
    }
}
