using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// The text tower of an OpenCLIP (or openai CLIP) state dict in transformers' <c>CLIPTextModel</c> names, as diffusers'
/// <c>convert_open_clip_checkpoint</c> (v0.21.4) maps an SD 2.x single file. OpenCLIP names (after the prefix):
/// token_embedding.weight, positional_embedding, transformer.resblocks.N.{ln_1, attn.in_proj_weight / in_proj_bias
/// (q, k and v stacked), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final. Under the same prefix the file also
/// holds text_projection, logit_scale and sometimes the vision tower (visual.*), which a CLIPTextModel has no place for.
/// <para>
/// SD 1.x single files hold transformers' names already, under <c>cond_stage_model.transformer.</c> (strip it); SDXL's
/// OpenCLIP bigG is under <c>conditioner.embedders.1.model.</c> (base) or <c>conditioner.embedders.0.model.</c> (refiner).
/// </para>
/// </summary>
internal static partial class OpenClipTextKeys
{
    /// <summary>Where an SD 2.x single file (ldm's FrozenOpenCLIPEmbedder) keeps the OpenCLIP model.</summary>
    public const string StableDiffusion2Prefix = "cond_stage_model.model.";

    // Keys under the prefix that are not the text tower's: the contrastive head, the vision tower, and the causal mask
    // older OpenCLIP versions saved as a buffer (the encoder builds its own).
    private static bool IsNotText(string key) =>
        key is "text_projection" or "logit_scale" or "attn_mask" || key.StartsWith("visual.", StringComparison.Ordinal);

    private static readonly (string OpenClip, string Transformers)[] LayerNames =
    [
        ("ln_1.weight", "layer_norm1.weight"), ("ln_1.bias", "layer_norm1.bias"),
        ("attn.out_proj.weight", "self_attn.out_proj.weight"), ("attn.out_proj.bias", "self_attn.out_proj.bias"),
        ("ln_2.weight", "layer_norm2.weight"), ("ln_2.bias", "layer_norm2.bias"),
        ("mlp.c_fc.weight", "mlp.fc1.weight"), ("mlp.c_fc.bias", "mlp.fc1.bias"),
        ("mlp.c_proj.weight", "mlp.fc2.weight"), ("mlp.c_proj.bias", "mlp.fc2.bias"),
    ];

    private static readonly (string OpenClip, string Transformers)[] GlobalNames =
    [
        ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
        ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
        ("ln_final.weight", "text_model.final_layer_norm.weight"),
        ("ln_final.bias", "text_model.final_layer_norm.bias"),
    ];

    [GeneratedRegex(@"^transformer\.resblocks\.(\d+)\.(.+)$")]
    private static partial Regex ResblockKey();

    /// <summary>How many resblocks the text tower under <paramref name="prefix"/> has (0 when there is none).</summary>
    public static int LayerCount(IReadOnlyDictionary<string, Tensor> checkpoint, string prefix = StableDiffusion2Prefix)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        int count = 0;
        foreach (string key in checkpoint.Keys)
            if (key.StartsWith(prefix, StringComparison.Ordinal) && ResblockKey().Match(key[prefix.Length..]) is { Success: true } m
                && int.TryParse(m.Groups[1].ValueSpan, out int index))
                count = Math.Max(count, index + 1);
        return count;
    }

    /// <summary>
    /// The text tower under <paramref name="prefix"/> in transformers' names (text_model.…), ready for
    /// <see cref="ClipTextEncoderFolder.Create"/>. <paramref name="layers"/> keeps only the first resblocks (SD 2.x in
    /// diffusers: 23 of 24, its "penultimate" layer); null keeps all. Keys outside the prefix are other networks' and are
    /// left alone; under it every key must be the text tower's (each mapped once) or one named above as not the text
    /// tower's, and every text tensor the layers need must be there. The returned tensors are the caller's (views that
    /// share the checkpoint's storage).
    /// </summary>
    public static Dictionary<string, Tensor> ToTransformers(IReadOnlyDictionary<string, Tensor> checkpoint, string prefix = StableDiffusion2Prefix,
        int? layers = null, string source = "the checkpoint")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(prefix);
        int available = LayerCount(checkpoint, prefix);
        if (!checkpoint.ContainsKey(prefix + "token_embedding.weight") && available == 0)
            throw new CheckpointFormatException($"{source} has no OpenCLIP text encoder under '{prefix}' (no {prefix}token_embedding.weight, no {prefix}transformer.resblocks.*).");
        int count = layers ?? available;
        if (count < 1 || count > available)
            throw new ArgumentOutOfRangeException(nameof(layers), layers, $"{source} has {available} text encoder layers under '{prefix}'; keep 1 to {available}.");

        // Every key under the prefix is the text tower's (mapped below, or a later resblock left out on purpose) or not text.
        var unknown = checkpoint.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).Select(k => k[prefix.Length..])
            .Where(k => !IsNotText(k) && !IsKnownText(k, available)).ToArray();
        if (unknown.Length > 0)
            throw new CheckpointFormatException($"{source} has {string.Join(", ", unknown.Take(5).Select(k => prefix + k))}{(unknown.Length > 5 ? $" and {unknown.Length - 5} more" : "")} under '{prefix}', which is no part of an OpenCLIP text encoder.");
        Tensor Take(string key) => checkpoint.TryGetValue(prefix + key, out var value) ? value
            : throw new CheckpointFormatException($"{source} lacks {prefix}{key}, which the text encoder needs.");
        var missing = GlobalNames.Select(g => g.OpenClip)
            .Concat(Enumerable.Range(0, count).SelectMany(i => LayerNames.Select(l => l.OpenClip).Append("attn.in_proj_weight").Append("attn.in_proj_bias")
                .Select(name => $"transformer.resblocks.{i}.{name}")))
            .Where(k => !checkpoint.ContainsKey(prefix + k)).ToArray();
        if (missing.Length > 0)
            throw new CheckpointFormatException($"{source} lacks {string.Join(", ", missing.Take(5).Select(k => prefix + k))}{(missing.Length > 5 ? $" and {missing.Length - 5} more" : "")}, which the text encoder needs.");

        long width = Take("token_embedding.weight").shape[^1];
        for (int i = 0; i < count; i++)
            foreach (string kind in new[] { "weight", "bias" })
            {
                string key = $"transformer.resblocks.{i}.attn.in_proj_{kind}";
                if (Take(key).shape[0] != 3 * width)
                    throw new CheckpointFormatException($"{source} has {prefix}{key} of shape [{string.Join(", ", Take(key).shape)}]; q, k and v of width {width} stack to {3 * width} rows.");
            }

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (openClip, transformers) in GlobalNames) result[transformers] = Take(openClip).alias();
        for (int i = 0; i < count; i++)
        {
            string from = $"transformer.resblocks.{i}.", to = $"text_model.encoder.layers.{i}.";
            foreach (var (openClip, transformers) in LayerNames) result[to + transformers] = Take(from + openClip).alias();
            foreach (string kind in new[] { "weight", "bias" })
            {
                var stacked = Take($"{from}attn.in_proj_{kind}");
                result[$"{to}self_attn.q_proj.{kind}"] = stacked.narrow(0, 0, width);
                result[$"{to}self_attn.k_proj.{kind}"] = stacked.narrow(0, width, width);
                result[$"{to}self_attn.v_proj.{kind}"] = stacked.narrow(0, 2 * width, width);
            }
        }
        return result;
    }

    /// <summary>
    /// The <see cref="ClipTextConfig"/> of the text tower under <paramref name="prefix"/>, from its tensors' shapes:
    /// vocabulary, width, MLP width, positions and layers (or <paramref name="layers"/>). What shapes do not show is
    /// given: the activation (OpenCLIP ViT-H / bigG: "gelu"; openai CLIP: "quick_gelu") and the head width (64 in
    /// every OpenCLIP and openai text tower). End token 2 selects transformers' legacy pooling (at the largest id),
    /// as diffusers' configs for these encoders do.
    /// </summary>
    public static ClipTextConfig InferConfig(IReadOnlyDictionary<string, Tensor> checkpoint, string prefix = StableDiffusion2Prefix,
        int? layers = null, string hiddenAct = "gelu", int headWidth = 64, string source = "the checkpoint")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        Tensor Get(string key) => checkpoint.TryGetValue(prefix + key, out var value) ? value
            : throw new CheckpointFormatException($"{source} lacks {prefix}{key}, which the text encoder needs.");
        var tokens = Get("token_embedding.weight");
        int width = (int)tokens.shape[1];
        if (headWidth <= 0 || width % headWidth != 0)
            throw new ArgumentException($"The text encoder's width {width} is not a multiple of the head width {headWidth}.", nameof(headWidth));
        int available = LayerCount(checkpoint, prefix);
        var config = new ClipTextConfig
        {
            VocabSize = (int)tokens.shape[0],
            HiddenSize = width,
            IntermediateSize = (int)Get("transformer.resblocks.0.mlp.c_fc.weight").shape[0],
            NumHiddenLayers = layers ?? available,
            NumAttentionHeads = width / headWidth,
            MaxPositionEmbeddings = (int)Get("positional_embedding").shape[0],
            HiddenAct = hiddenAct,
            ProjectionDim = checkpoint.TryGetValue(prefix + "text_projection", out var projection) ? (int)projection.shape[^1] : width,
            BosTokenId = 0,
            EosTokenId = 2,
        };
        config.Validate();
        return config;
    }

    /// <summary>
    /// The transformers names one key under the prefix (given without it) loads into, for a loader that reads tensor by
    /// tensor: one name, or q, k and v for <c>attn.in_proj_*</c> (stacked in that order along the first dimension);
    /// empty for a key that is not the text tower's (the contrastive head, the vision tower) or a resblock at or beyond
    /// <paramref name="layers"/>; null for a key that is no part of an OpenCLIP model.
    /// </summary>
    public static string[]? Targets(string key, int layers)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (IsNotText(key)) return [];
        foreach (var (openClip, transformers) in GlobalNames)
            if (key == openClip) return [transformers];
        if (ResblockKey().Match(key) is not { Success: true } m || !int.TryParse(m.Groups[1].ValueSpan, out int index)) return null;
        string rest = m.Groups[2].Value, to = $"text_model.encoder.layers.{index}.";
        string[]? targets = rest switch
        {
            "attn.in_proj_weight" => [to + "self_attn.q_proj.weight", to + "self_attn.k_proj.weight", to + "self_attn.v_proj.weight"],
            "attn.in_proj_bias" => [to + "self_attn.q_proj.bias", to + "self_attn.k_proj.bias", to + "self_attn.v_proj.bias"],
            _ => Array.Find(LayerNames, l => l.OpenClip == rest) is { Transformers: not null } l ? [to + l.Transformers] : null,
        };
        return targets is null ? null : index >= layers ? [] : targets;
    }

    private static bool IsKnownText(string key, int available)
    {
        if (GlobalNames.Any(g => g.OpenClip == key)) return true;
        if (ResblockKey().Match(key) is not { Success: true } m || !int.TryParse(m.Groups[1].ValueSpan, out int index) || index >= available) return false;
        string rest = m.Groups[2].Value;
        return rest is "attn.in_proj_weight" or "attn.in_proj_bias" || LayerNames.Any(l => l.OpenClip == rest);
    }
}
