using Microsoft.ML.Diffusion.Models;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>LoRA adapters for diffusion models (Stable Diffusion's, and any other network's by its layer names).</summary>
public static class LoraExtensions
{
    /// <summary>
    /// Reads a LoRA file (.safetensors in the diffusers, PEFT or Kohya/A1111 layout) and fuses it into the model's noise
    /// predictor (a Stable Diffusion model's UNet) and text encoder at <paramref name="scale"/>: each weight W it names
    /// becomes W + scale · (alpha / rank) · up @ down (alpha / rank is 1 when the file has no alpha), diffusers' math. Several LoRAs can be fused at once, each at its
    /// own scale; their updates add up. The returned handle unfuses the LoRA exactly.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scale"/> is NaN or infinite.</exception>
    /// <exception cref="Checkpoints.CheckpointFormatException">The file is not a LoRA of a known layout, is inconsistent or corrupt, or names layers the model does not have (the message names them).</exception>
    public static FusedLora LoadLora(this DiffusionModel model, string path, double scale = 1.0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!double.IsFinite(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "The LoRA scale must be a finite number (1 applies the LoRA as trained, 0 not at all).");
        return Fuse(model, LoraAdapter.Read(path), scale, path);
    }

    /// <summary>Fuses <paramref name="adapter"/> (which the returned handle then owns; on failure it is disposed) into the model.</summary>
    internal static FusedLora Fuse(DiffusionModel model, LoraAdapter adapter, double scale, string path)
    {
        try
        {
            adapter = FirstUNetLora.Renamed(model, adapter);
            var targets = LoraTargets.Resolve(model, adapter);
            return LoraFusion.Of(model).Fuse(adapter, targets, scale, path);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }
}
