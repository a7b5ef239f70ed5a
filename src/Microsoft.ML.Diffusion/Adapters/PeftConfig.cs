using System.Text.Json;
using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// PEFT's adapter_config.json, which PEFT's save_pretrained writes beside adapter_model.safetensors: its lora_alpha is the
/// alpha of every layer (PEFT scales by lora_alpha / r). Per-layer rank_pattern / alpha_pattern are refused rather than
/// guessed at.
/// </summary>
internal static class PeftConfig
{
    public const string FileName = "adapter_config.json";

    public static double? Alpha(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            foreach (string pattern in new[] { "rank_pattern", "alpha_pattern" })
            {
                if (root.TryGetProperty(pattern, out var p) && p.ValueKind == JsonValueKind.Object && p.EnumerateObject().Any())
                    throw new CheckpointFormatException($"'{path}' gives layers their own ranks or alphas ({pattern}); such PEFT adapters are not supported.");
            }
            if (!root.TryGetProperty("lora_alpha", out var alpha) || alpha.ValueKind != JsonValueKind.Number) return null;
            double value = alpha.GetDouble();
            if (!double.IsFinite(value)) throw new CheckpointFormatException($"'{path}' has lora_alpha {value}.");
            return value;
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }
}
