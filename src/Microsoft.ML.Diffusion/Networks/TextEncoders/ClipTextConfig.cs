using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextConfig</c>: the shape of a CLIP text encoder, as a diffusers pipeline's
/// <c>text_encoder/config.json</c> gives it. Defaults are transformers' (those of openai/clip-vit-base-patch32's text
/// tower). SD 1.x: hidden 768, 12 layers, 12 heads, quick_gelu; SD 2.x: hidden 1024, 23 layers (OpenCLIP ViT-H's 24
/// without the last, which is how diffusers stores "penultimate"), 16 heads, gelu.
/// </summary>
internal sealed record ClipTextConfig
{
    /// <summary>The activations the encoder layers' MLP may use (transformers' hidden_act).</summary>
    public static readonly IReadOnlyList<string> Activations = ["quick_gelu", "gelu"];

    public int VocabSize { get; init; } = 49408;
    public int HiddenSize { get; init; } = 512;
    public int IntermediateSize { get; init; } = 2048;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 8;
    /// <summary>The longest token sequence (77 for every Stable Diffusion text encoder).</summary>
    public int MaxPositionEmbeddings { get; init; } = 77;
    /// <summary>"quick_gelu" (x·σ(1.702x), openai's CLIP) or "gelu" (OpenCLIP).</summary>
    public string HiddenAct { get; init; } = "quick_gelu";
    public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>The projection's width; read but unused, as CLIPTextModel has no projection.</summary>
    public int ProjectionDim { get; init; } = 512;
    public int PadTokenId { get; init; } = 1;
    public int BosTokenId { get; init; } = 49406;
    /// <summary>
    /// The end token. 2, which older configs (every Stable Diffusion one) carry though it is not CLIP's end token, makes
    /// the pooled output transformers' legacy one: at the largest id of each row, where the end token sits in CLIP's
    /// vocabulary. Any other value pools at the first occurrence of this id.
    /// </summary>
    public int EosTokenId { get; init; } = 49407;

    /// <summary>The SD 1.x text encoder (openai/clip-vit-large-patch14's text tower), as runwayml/stable-diffusion-v1-5 stores it.</summary>
    public static ClipTextConfig StableDiffusion1 => new()
    {
        HiddenSize = 768, IntermediateSize = 3072, NumHiddenLayers = 12, NumAttentionHeads = 12, HiddenAct = "quick_gelu",
        ProjectionDim = 768, BosTokenId = 0, EosTokenId = 2,
    };

    /// <summary>The SD 2.x text encoder (OpenCLIP ViT-H/14's text tower without its last layer), as stabilityai/stable-diffusion-2 stores it.</summary>
    public static ClipTextConfig StableDiffusion2 => new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 23, NumAttentionHeads = 16, HiddenAct = "gelu",
        ProjectionDim = 512, BosTokenId = 0, EosTokenId = 2,
    };

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first setting the encoder cannot be built with.</summary>
    public void Validate()
    {
        static void Positive(int value, string name)
        {
            if (value <= 0) throw new ArgumentException($"{name} is {value}; it must be positive.", name);
        }
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.", "num_attention_heads");
        if (!Activations.Contains(HiddenAct))
            throw new ArgumentException($"hidden_act is \"{HiddenAct}\"; supported are {string.Join(" and ", Activations.Select(a => $"\"{a}\""))}.", "hidden_act");
        if (!(LayerNormEps > 0)) throw new ArgumentException($"layer_norm_eps is {LayerNormEps}; it must be positive.", "layer_norm_eps");
    }

    /// <summary>
    /// Reads a transformers <c>config.json</c> of a <c>CLIPTextModel</c>. Fields it does not name (the many generic
    /// ones PretrainedConfig writes, dropout rates, initialiser scales) do not change the network and are ignored;
    /// <paramref name="source"/> names the file in errors.
    /// </summary>
    public static ClipTextConfig Read(string json, string source)
    {
        JsonObject config;
        try
        {
            config = JsonNode.Parse(json) as JsonObject ?? throw new CheckpointFormatException($"{source} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{source} is not valid JSON: {e.Message}", e);
        }
        string modelType = Get(config, "model_type", source, "clip_text_model");
        if (modelType != "clip_text_model")
            throw new CheckpointFormatException($"{source} has model_type \"{modelType}\"; a CLIP text encoder's is \"clip_text_model\".");
        if (config["architectures"] is JsonArray)
        {
            string[] architectures = Get<string[]>(config, "architectures", source, []);
            if (architectures.Length > 0 && !architectures.Contains("CLIPTextModel"))
                throw new CheckpointFormatException($"{source} describes a {string.Join(", ", architectures)}; only CLIPTextModel (no text projection) is supported.");
        }
        var defaults = new ClipTextConfig();
        var result = new ClipTextConfig
        {
            VocabSize = Get(config, "vocab_size", source, defaults.VocabSize),
            HiddenSize = Get(config, "hidden_size", source, defaults.HiddenSize),
            IntermediateSize = Get(config, "intermediate_size", source, defaults.IntermediateSize),
            NumHiddenLayers = Get(config, "num_hidden_layers", source, defaults.NumHiddenLayers),
            NumAttentionHeads = Get(config, "num_attention_heads", source, defaults.NumAttentionHeads),
            MaxPositionEmbeddings = Get(config, "max_position_embeddings", source, defaults.MaxPositionEmbeddings),
            HiddenAct = Get(config, "hidden_act", source, defaults.HiddenAct),
            LayerNormEps = Get(config, "layer_norm_eps", source, defaults.LayerNormEps),
            ProjectionDim = Get(config, "projection_dim", source, defaults.ProjectionDim),
            PadTokenId = Get(config, "pad_token_id", source, defaults.PadTokenId),
            BosTokenId = Get(config, "bos_token_id", source, defaults.BosTokenId),
            EosTokenId = Get(config, "eos_token_id", source, defaults.EosTokenId),
        };
        try
        {
            result.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"{source} describes a CLIP text encoder this library cannot build: {e.Message}", e);
        }
        return result;
    }

    /// <summary>The config.json transformers' <c>CLIPTextModel.from_pretrained</c> reads for these settings.</summary>
    public string Write()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("CLIPTextModel"),
            ["model_type"] = "clip_text_model",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["hidden_act"] = HiddenAct,
            ["layer_norm_eps"] = LayerNormEps,
            ["projection_dim"] = ProjectionDim,
            ["pad_token_id"] = PadTokenId,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["torch_dtype"] = "float32",
        };
        return config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static T Get<T>(JsonObject config, string field, string source, T fallback)
    {
        if (!config.TryGetPropertyValue(field, out var node)) return fallback;
        if (node is null) throw new CheckpointFormatException($"{source} has {field} null; a value is needed.");
        try
        {
            if (typeof(T) == typeof(int))
            {
                double number = node.GetValue<double>();   // 1 and 1.0 alike
                if (number != Math.Floor(number) || Math.Abs(number) > int.MaxValue) throw new FormatException();
                return (T)(object)(int)number;
            }
            return JsonSerializer.Deserialize<T>(node) ?? throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or JsonException)
        {
            string kind = typeof(T) == typeof(int) ? "whole number" : typeof(T) == typeof(double) ? "number"
                : typeof(T) == typeof(string) ? "string" : "list of strings";
            throw new CheckpointFormatException($"{source} has {field} {node.ToJsonString()}, which is not a {kind}.", e);
        }
    }
}
