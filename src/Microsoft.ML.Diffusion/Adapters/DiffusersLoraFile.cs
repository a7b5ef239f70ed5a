using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Storage;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// Writes LoRA layers in diffusers v0.21's layout, the one <c>UNet2DConditionModel.save_attn_procs</c> writes and
/// <c>load_attn_procs</c> / <c>load_lora_weights</c> read: an attention projection's factors under its attention
/// processor ('<c>…attn1.processor.to_q_lora.down.weight</c>', to_out.0 as <c>to_out_lora</c>), any other layer under
/// its LoRA-compatible name ('<c>…proj_in.lora.down.weight</c>'), text-encoder layers as
/// '<c>text_encoder.…q_proj.lora_linear_layer.down.weight</c>' with the UNet's then under '<c>unet.</c>' (diffusers'
/// pipeline layout). diffusers' files have no alpha, so alpha / rank is multiplied into up (in float32, as fusing does).
/// </summary>
internal static class DiffusersLoraFile
{
    /// <summary>The file name diffusers saves and looks for in a folder.</summary>
    public const string FileName = "pytorch_lora_weights.safetensors";

    private static readonly string[] Processors = ["to_q", "to_k", "to_v"];

    /// <summary>The file's tensors for <paramref name="layers"/> (their module names dotted, as the model names them), in order.</summary>
    public static List<(string Name, Tensor Tensor)> Tensors(IReadOnlyList<(LoraComponent Component, string Module, LoraLayer Layer)> layers)
    {
        bool prefixed = layers.Any(l => l.Component == LoraComponent.TextEncoder);
        var tensors = new List<(string, Tensor)>(2 * layers.Count);
        foreach (var (component, module, layer) in layers)
        {
            string down, up;
            if (component == LoraComponent.TextEncoder)
            {
                (down, up) = ($"text_encoder.{module}.lora_linear_layer.down.weight", $"text_encoder.{module}.lora_linear_layer.up.weight");
            }
            else
            {
                string key = $"{module}.lora";
                int dot = module.LastIndexOf('.');
                string last = module[(dot + 1)..];
                if (dot > 0 && Processors.Contains(last)) key = $"{module[..dot]}.processor.{last}_lora";
                else if (module.EndsWith(".to_out.0", StringComparison.Ordinal)) key = $"{module[..^".to_out.0".Length]}.processor.to_out_lora";
                if (prefixed) key = "unet." + key;
                (down, up) = ($"{key}.down.weight", $"{key}.up.weight");
            }
            var upValues = layer.Alpha is { } alpha ? layer.Up * (alpha / layer.Rank) : layer.Up.alias();
            tensors.Add((down, layer.Down));
            tensors.Add((up, upValues));
        }
        return tensors;
    }

    /// <summary>
    /// Writes the layers to <paramref name="path"/> atomically: a .safetensors file, or a folder to write
    /// <see cref="FileName"/> into (as save_attn_procs does). Returns the file written.
    /// </summary>
    public static string Write(string path, IReadOnlyList<(LoraComponent Component, string Module, LoraLayer Layer)> layers)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (layers.Count == 0) throw new InvalidOperationException("There are no LoRA layers to write.");
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        byte[] bytes = Bytes(layers);
        AtomicFile.Write(file, stream => stream.Write(bytes));
        return file;
    }

    /// <summary>The safetensors file of <paramref name="layers"/>, in memory.</summary>
    public static byte[] Bytes(IReadOnlyList<(LoraComponent Component, string Module, LoraLayer Layer)> layers)
    {
        if (layers.Count == 0) throw new InvalidOperationException("There are no LoRA layers to write.");
        using var scope = NewDisposeScope();
        return SafeTensors.Write(Tensors(layers), new Dictionary<string, string> { ["format"] = "pt" });
    }
}
