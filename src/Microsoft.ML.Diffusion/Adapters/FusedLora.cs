namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// A LoRA fused into a Stable Diffusion model's weights at a scale (see <see cref="LoraExtensions.LoadLora"/>).
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

    /// <summary>The LoRA file.</summary>
    public string Path { get; }

    /// <summary>The scale the LoRA's update is fused at (diffusers' <c>lora_scale</c>, A1111's weight in &lt;lora:name:weight&gt;).</summary>
    public double Scale { get; }

    /// <summary>How the file names its tensors: "diffusers", "peft" or "kohya".</summary>
    public string Layout => _adapter.Layout.ToString().ToLowerInvariant();

    /// <summary>Weights of the UNet the LoRA updates.</summary>
    public int UNetLayers => Targets.Count(t => t.Key.StartsWith("unet.", StringComparison.Ordinal));

    /// <summary>Weights of the text encoder the LoRA updates.</summary>
    public int TextEncoderLayers => Targets.Count(t => t.Key.StartsWith("text_encoder.", StringComparison.Ordinal));

    /// <summary>Whether the LoRA is in the model's weights now.</summary>
    public bool IsFused => _fusion.Fused.Contains(this);

    internal IReadOnlyList<LoraTarget> Targets { get; }

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
