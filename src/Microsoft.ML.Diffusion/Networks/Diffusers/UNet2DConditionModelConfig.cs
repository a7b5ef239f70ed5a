using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The configuration of diffusers' <c>UNet2DConditionModel</c> (v0.21), field by field as its <c>unet/config.json</c>
/// names them, for the settings Stable Diffusion 1.x and 2.x use. Defaults are diffusers' own. Fields that diffusers
/// takes as a number or a list (one per level) are lists here, with one entry meaning every level.
/// </summary>
internal sealed record UNet2DConditionModelConfig
{
    /// <summary><c>sample_size</c>: the latent side the model was trained at (informative; any size runs), or null.</summary>
    public int? SampleSize { get; init; }

    /// <summary><c>in_channels</c>: latent channels in (4; 9 for inpainting models).</summary>
    public int InChannels { get; init; } = 4;

    /// <summary><c>out_channels</c>: channels of the prediction.</summary>
    public int OutChannels { get; init; } = 4;

    /// <summary><c>center_input_sample</c>: the input is mapped by 2x − 1 first.</summary>
    public bool CenterInputSample { get; init; }

    /// <summary><c>flip_sin_to_cos</c>: the timestep embedding puts cosines first.</summary>
    public bool FlipSinToCos { get; init; } = true;

    /// <summary><c>freq_shift</c>: the timestep embedding's frequency shift.</summary>
    public double FreqShift { get; init; }

    /// <summary><c>down_block_types</c>: "CrossAttnDownBlock2D" or "DownBlock2D" per level.</summary>
    public string[] DownBlockTypes { get; init; } = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];

    /// <summary><c>mid_block_type</c>: "UNetMidBlock2DCrossAttn".</summary>
    public string? MidBlockType { get; init; } = "UNetMidBlock2DCrossAttn";

    /// <summary><c>up_block_types</c>: "UpBlock2D" or "CrossAttnUpBlock2D" per level, deepest first.</summary>
    public string[] UpBlockTypes { get; init; } = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];

    /// <summary><c>only_cross_attention</c>: the down and up transformers' first attention attends to the text too (per level or one for all; not the mid block's, as in diffusers).</summary>
    public bool[] OnlyCrossAttention { get; init; } = [false];

    /// <summary><c>block_out_channels</c>: channels per level.</summary>
    public int[] BlockOutChannels { get; init; } = [320, 640, 1280, 1280];

    /// <summary><c>layers_per_block</c>: residual blocks per down level (up levels have one more), per level or one for all.</summary>
    public int[] LayersPerBlock { get; init; } = [2];

    /// <summary><c>downsample_padding</c>: padding of the stride-2 convolutions (0 pads right and bottom by one first).</summary>
    public int DownsamplePadding { get; init; } = 1;

    /// <summary><c>mid_block_scale_factor</c>: the mid block's residual outputs are divided by it.</summary>
    public double MidBlockScaleFactor { get; init; } = 1;

    /// <summary><c>dropout</c> in the residual blocks (training only).</summary>
    public double Dropout { get; init; }

    /// <summary><c>act_fn</c>: "silu" (or "swish"), "mish", "gelu" or "relu".</summary>
    public string ActFn { get; init; } = "silu";

    /// <summary><c>norm_num_groups</c>: GroupNorm groups.</summary>
    public int NormNumGroups { get; init; } = 32;

    /// <summary><c>norm_eps</c>: the residual blocks' and the output's GroupNorm epsilon.</summary>
    public double NormEps { get; init; } = 1e-5;

    /// <summary><c>cross_attention_dim</c>: the width of the text embeddings (768 for SD 1.x, 1024 for SD 2.x).</summary>
    public int CrossAttentionDim { get; init; } = 1280;

    /// <summary><c>transformer_layers_per_block</c>: transformer blocks per cross-attention layer, per level or one for all.</summary>
    public int[] TransformerLayersPerBlock { get; init; } = [1];

    /// <summary>
    /// <c>attention_head_dim</c>, per level or one for all. Despite its name it is the number of heads when
    /// <c>num_attention_heads</c> is null, as in every Stable Diffusion configuration (diffusers keeps the old misnomer).
    /// </summary>
    public int[] AttentionHeadDim { get; init; } = [8];

    /// <summary><c>num_attention_heads</c>: heads per level (or one for all); null takes them from attention_head_dim.</summary>
    public int[]? NumAttentionHeads { get; init; }

    /// <summary><c>use_linear_projection</c>: the transformers project in and out with Linear layers (SD 2.x) instead of 1×1 convolutions.</summary>
    public bool UseLinearProjection { get; init; }

    /// <summary><c>upcast_attention</c>: attention scores in float32 when the network runs in half precision (SD 2.1).</summary>
    public bool UpcastAttention { get; init; }

    /// <summary><c>resnet_time_scale_shift</c>: "default" (the timestep embedding is added) or "scale_shift".</summary>
    public string ResnetTimeScaleShift { get; init; } = "default";

    /// <summary><c>time_embedding_dim</c>: the timestep embedding's width; null for 4 × block_out_channels[0].</summary>
    public int? TimeEmbeddingDim { get; init; }

    /// <summary><c>time_embedding_act_fn</c>: an activation applied once to the timestep embedding, or null.</summary>
    public string? TimeEmbeddingActFn { get; init; }

    /// <summary><c>timestep_post_act</c>: an activation after the timestep embedding's second Linear, or null.</summary>
    public string? TimestepPostAct { get; init; }

    /// <summary>
    /// <c>addition_embed_type</c>: null. SDXL's "text_time" (pooled text and size/crop embeddings added to the timestep
    /// embedding, with <see cref="AdditionTimeEmbedDim"/> and <see cref="ProjectionClassEmbeddingsInputDim"/>) is refused
    /// until it is built.
    /// </summary>
    public string? AdditionEmbedType { get; init; }

    /// <summary><c>addition_time_embed_dim</c>: SDXL's time-id embedding width (unused without addition_embed_type).</summary>
    public int? AdditionTimeEmbedDim { get; init; }

    /// <summary><c>projection_class_embeddings_input_dim</c>: SDXL's added-embedding input width (unused without addition_embed_type).</summary>
    public int? ProjectionClassEmbeddingsInputDim { get; init; }

    /// <summary>The number of levels (down blocks).</summary>
    public int Levels => BlockOutChannels.Length;

    /// <summary>The timestep embedding's width, which every residual block receives.</summary>
    public int TimeEmbedDim => TimeEmbeddingDim ?? BlockOutChannels[0] * 4;

    /// <summary>The attention heads at down level <paramref name="level"/> (diffusers' num_attention_heads, or attention_head_dim when that is null).</summary>
    public int HeadsAt(int level) => At(NumAttentionHeads ?? AttentionHeadDim, level);

    /// <summary>The entry for down level <paramref name="level"/> of a per-level setting given once or per level.</summary>
    public static T At<T>(T[] values, int level) => values.Length == 1 ? values[0] : values[level];

    /// <summary>Checks that the network can be built; throws an <see cref="ArgumentException"/> naming the field and its value.</summary>
    public void Validate()
    {
        CheckAdditionEmbedType(AdditionEmbedType);
        int levels = BlockOutChannels?.Length ?? 0;
        if (levels == 0) throw new ArgumentException("block_out_channels must name at least one level.", nameof(BlockOutChannels));
        if (DownBlockTypes is null || DownBlockTypes.Length != levels)
            throw new ArgumentException($"down_block_types has {DownBlockTypes?.Length ?? 0} entries but block_out_channels has {levels}.", nameof(DownBlockTypes));
        if (UpBlockTypes is null || UpBlockTypes.Length != levels)
            throw new ArgumentException($"up_block_types has {UpBlockTypes?.Length ?? 0} entries but block_out_channels has {levels}.", nameof(UpBlockTypes));
        foreach (string type in DownBlockTypes)
            if (type is not ("CrossAttnDownBlock2D" or "DownBlock2D"))
                throw new ArgumentException($"down_block_types holds \"{type}\"; supported are CrossAttnDownBlock2D and DownBlock2D (Stable Diffusion 1.x/2.x).", nameof(DownBlockTypes));
        foreach (string type in UpBlockTypes)
            if (type is not ("CrossAttnUpBlock2D" or "UpBlock2D"))
                throw new ArgumentException($"up_block_types holds \"{type}\"; supported are CrossAttnUpBlock2D and UpBlock2D (Stable Diffusion 1.x/2.x).", nameof(UpBlockTypes));
        if (MidBlockType != "UNetMidBlock2DCrossAttn")
            throw new ArgumentException($"mid_block_type is {Quote(MidBlockType)}; supported is \"UNetMidBlock2DCrossAttn\" (Stable Diffusion 1.x/2.x).", nameof(MidBlockType));
        if (InChannels < 1) throw new ArgumentException($"in_channels is {InChannels}; it must be positive.", nameof(InChannels));
        if (OutChannels < 1) throw new ArgumentException($"out_channels is {OutChannels}; it must be positive.", nameof(OutChannels));
        if (NormNumGroups < 1) throw new ArgumentException($"norm_num_groups is {NormNumGroups}; it must be positive.", nameof(NormNumGroups));
        foreach (int c in BlockOutChannels!)
            if (c < 1 || c % NormNumGroups != 0)
                throw new ArgumentException($"block_out_channels holds {c}, which norm_num_groups ({NormNumGroups}) does not divide.", nameof(BlockOutChannels));
        if (!(NormEps > 0)) throw new ArgumentException($"norm_eps is {NormEps}; it must be positive.", nameof(NormEps));
        PerLevel(LayersPerBlock, "layers_per_block", nameof(LayersPerBlock), levels, 1);
        PerLevel(TransformerLayersPerBlock, "transformer_layers_per_block", nameof(TransformerLayersPerBlock), levels, 1);
        PerLevel(AttentionHeadDim, "attention_head_dim", nameof(AttentionHeadDim), levels, 1);
        if (NumAttentionHeads is not null) PerLevel(NumAttentionHeads, "num_attention_heads", nameof(NumAttentionHeads), levels, 1);
        if (OnlyCrossAttention is null || (OnlyCrossAttention.Length != 1 && OnlyCrossAttention.Length != levels))
            throw new ArgumentException($"only_cross_attention has {OnlyCrossAttention?.Length ?? 0} entries; it needs one or one per level ({levels}).", nameof(OnlyCrossAttention));
        for (int i = 0; i < levels; i++)
        {
            bool attention = DownBlockTypes[i] == "CrossAttnDownBlock2D" || UpBlockTypes[levels - 1 - i] == "CrossAttnUpBlock2D" || i == levels - 1;
            if (attention && HeadsAt(i) > BlockOutChannels[i])
                throw new ArgumentException($"{(NumAttentionHeads is null ? "attention_head_dim" : "num_attention_heads")} asks for {HeadsAt(i)} heads at level {i}, which has only {BlockOutChannels[i]} channels.",
                    NumAttentionHeads is null ? nameof(AttentionHeadDim) : nameof(NumAttentionHeads));
        }
        if (CrossAttentionDim < 1) throw new ArgumentException($"cross_attention_dim is {CrossAttentionDim}; it must be positive.", nameof(CrossAttentionDim));
        CheckActivation(ActFn, "act_fn", nameof(ActFn));
        if (TimeEmbeddingActFn is not null) CheckActivation(TimeEmbeddingActFn, "time_embedding_act_fn", nameof(TimeEmbeddingActFn));
        if (TimestepPostAct is not null) CheckActivation(TimestepPostAct, "timestep_post_act", nameof(TimestepPostAct));
        if (ResnetTimeScaleShift is not ("default" or "scale_shift"))
            throw new ArgumentException($"resnet_time_scale_shift is {Quote(ResnetTimeScaleShift)}; supported are \"default\" and \"scale_shift\".", nameof(ResnetTimeScaleShift));
        if (DownsamplePadding is < 0 or > 1) throw new ArgumentException($"downsample_padding is {DownsamplePadding}; supported are 0 and 1.", nameof(DownsamplePadding));
        if (!(MidBlockScaleFactor > 0)) throw new ArgumentException($"mid_block_scale_factor is {MidBlockScaleFactor}; it must be positive.", nameof(MidBlockScaleFactor));
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"dropout is {Dropout}; it must lie in [0, 1).", nameof(Dropout));
        if (TimeEmbeddingDim is < 1) throw new ArgumentException($"time_embedding_dim is {TimeEmbeddingDim}; it must be positive (or null).", nameof(TimeEmbeddingDim));
    }

    /// <summary>The <c>config.json</c> diffusers v0.21.4 writes for this configuration, every field written out.</summary>
    public string ToJson()
    {
        static JsonNode OneOrList(int[] values) => values.Length == 1 ? values[0] : new JsonArray([.. values.Select(v => (JsonNode)v)]);
        static JsonArray Strings(string[] values) => new([.. values.Select(v => (JsonNode)v)]);
        var json = new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["_diffusers_version"] = "0.21.4",
            ["act_fn"] = ActFn,
            ["addition_embed_type"] = null,
            ["addition_embed_type_num_heads"] = 64,
            ["addition_time_embed_dim"] = null,
            ["attention_head_dim"] = OneOrList(AttentionHeadDim),
            ["attention_type"] = "default",
            ["block_out_channels"] = new JsonArray([.. BlockOutChannels.Select(v => (JsonNode)v)]),
            ["center_input_sample"] = CenterInputSample,
            ["class_embed_type"] = null,
            ["class_embeddings_concat"] = false,
            ["conv_in_kernel"] = 3,
            ["conv_out_kernel"] = 3,
            ["cross_attention_dim"] = CrossAttentionDim,
            ["cross_attention_norm"] = null,
            ["down_block_types"] = Strings(DownBlockTypes),
            ["downsample_padding"] = DownsamplePadding,
            ["dropout"] = Dropout,
            ["dual_cross_attention"] = false,
            ["encoder_hid_dim"] = null,
            ["encoder_hid_dim_type"] = null,
            ["flip_sin_to_cos"] = FlipSinToCos,
            ["freq_shift"] = FreqShift,
            ["in_channels"] = InChannels,
            ["layers_per_block"] = OneOrList(LayersPerBlock),
            ["mid_block_only_cross_attention"] = null,
            ["mid_block_scale_factor"] = MidBlockScaleFactor,
            ["mid_block_type"] = MidBlockType,
            ["norm_eps"] = NormEps,
            ["norm_num_groups"] = NormNumGroups,
            ["num_attention_heads"] = NumAttentionHeads is null ? null : OneOrList(NumAttentionHeads),
            ["num_class_embeds"] = null,
            ["only_cross_attention"] = OnlyCrossAttention.Length == 1 ? OnlyCrossAttention[0] : new JsonArray([.. OnlyCrossAttention.Select(v => (JsonNode)v)]),
            ["out_channels"] = OutChannels,
            ["projection_class_embeddings_input_dim"] = null,
            ["resnet_out_scale_factor"] = 1.0,
            ["resnet_skip_time_act"] = false,
            ["resnet_time_scale_shift"] = ResnetTimeScaleShift,
            ["sample_size"] = SampleSize,
            ["time_cond_proj_dim"] = null,
            ["time_embedding_act_fn"] = TimeEmbeddingActFn,
            ["time_embedding_dim"] = TimeEmbeddingDim,
            ["time_embedding_type"] = "positional",
            ["timestep_post_act"] = TimestepPostAct,
            ["transformer_layers_per_block"] = OneOrList(TransformerLayersPerBlock),
            ["up_block_types"] = Strings(UpBlockTypes),
            ["upcast_attention"] = UpcastAttention,
            ["use_linear_projection"] = UseLinearProjection,
        };
        return json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Reads a diffusers <c>unet/config.json</c>; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="CheckpointFormatException">The text is not a JSON object.</exception>
    /// <exception cref="ArgumentException">A field has a value this library does not support or cannot read; the message names it.</exception>
    public static UNet2DConditionModelConfig Read(string json, string source)
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
        try
        {
            return Read(config);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{source}: {e.Message}", e.ParamName, e);
        }
    }

    /// <summary>Reads the config.json at <paramref name="path"/>.</summary>
    public static UNet2DConditionModelConfig Load(string path) => Read(File.ReadAllText(path), $"'{path}'");

    private static UNet2DConditionModelConfig Read(JsonObject config)
    {
        // SDXL first, so that its configuration is named as such whatever else it holds.
        if (config.TryGetPropertyValue("addition_embed_type", out var addition)) CheckAdditionEmbedType(String(addition, "addition_embed_type"));
        var c = new UNet2DConditionModelConfig();
        foreach (var (name, node) in config)
        {
            c = name switch
            {
                "_class_name" => String(node, name) is "UNet2DConditionModel" or null ? c
                    : throw new ArgumentException($"_class_name is {node!.ToJsonString()}; this is not a UNet2DConditionModel's configuration.", name),
                "_diffusers_version" or "_name_or_path" or "_use_default_values" => c,
                "sample_size" => c with { SampleSize = SampleSizeOf(node) },
                "in_channels" => c with { InChannels = Int(node, name) },
                "out_channels" => c with { OutChannels = Int(node, name) },
                "center_input_sample" => c with { CenterInputSample = Bool(node, name) },
                "flip_sin_to_cos" => c with { FlipSinToCos = Bool(node, name) },
                "freq_shift" => c with { FreqShift = Number(node, name) },
                "down_block_types" => c with { DownBlockTypes = Strings(node, name) },
                "mid_block_type" => c with { MidBlockType = String(node, name) },
                "up_block_types" => c with { UpBlockTypes = Strings(node, name) },
                "only_cross_attention" => c with { OnlyCrossAttention = OneOrList(node, name, Bool) },
                "block_out_channels" => c with { BlockOutChannels = List(node, name, Int) },
                "layers_per_block" => c with { LayersPerBlock = OneOrList(node, name, Int) },
                "downsample_padding" => c with { DownsamplePadding = Int(node, name) },
                "mid_block_scale_factor" => c with { MidBlockScaleFactor = Number(node, name) },
                "dropout" => c with { Dropout = Number(node, name) },
                "act_fn" => c with { ActFn = Name(node, name) },
                "norm_num_groups" => c with { NormNumGroups = node is null ? throw Unsupported(name, node, "a number of groups (null, no output normalisation, is not supported)") : Int(node, name) },
                "norm_eps" => c with { NormEps = Number(node, name) },
                "cross_attention_dim" => c with { CrossAttentionDim = CrossAttentionDimOf(node) },
                "transformer_layers_per_block" => c with { TransformerLayersPerBlock = OneOrList(node, name, Int) },
                "attention_head_dim" => c with { AttentionHeadDim = node is null ? throw Unsupported(name, node, "a number of heads or a list of them") : OneOrList(node, name, Int) },
                "num_attention_heads" => c with { NumAttentionHeads = node is null ? null : OneOrList(node, name, Int) },
                "use_linear_projection" => c with { UseLinearProjection = Bool(node, name) },
                "upcast_attention" => c with { UpcastAttention = Bool(node, name) },
                "resnet_time_scale_shift" => c with { ResnetTimeScaleShift = Name(node, name) },
                "time_embedding_dim" => c with { TimeEmbeddingDim = node is null ? null : Int(node, name) },
                "time_embedding_act_fn" => c with { TimeEmbeddingActFn = String(node, name) },
                "timestep_post_act" => c with { TimestepPostAct = String(node, name) },
                "addition_embed_type" => c with { AdditionEmbedType = String(node, name) },
                "addition_time_embed_dim" => c with { AdditionTimeEmbedDim = node is null ? null : Int(node, name) },
                "projection_class_embeddings_input_dim" => c with { ProjectionClassEmbeddingsInputDim = node is null ? null : Int(node, name) },
                // Settings that only matter for blocks or embeddings Stable Diffusion does not use.
                "mid_block_only_cross_attention" => Inert(c, node, name, Bool),
                "addition_embed_type_num_heads" => Inert(c, node, name, Int),
                // Settings Stable Diffusion 1.x/2.x leave at their defaults; any other value is refused by name.
                "time_embedding_type" => Fixed(c, name, node, "positional"),
                "dual_cross_attention" => Fixed(c, name, node, false),
                "class_embed_type" => Fixed(c, name, node, null, "class-conditioned UNets are not supported"),
                "num_class_embeds" => Fixed(c, name, node, null, "class-conditioned UNets are not supported"),
                "class_embeddings_concat" => Fixed(c, name, node, false),
                "encoder_hid_dim" => Fixed(c, name, node, null, "a projection of the text embeddings (Kandinsky, DeepFloyd IF) is not supported"),
                "encoder_hid_dim_type" => Fixed(c, name, node, null, "a projection of the text embeddings (Kandinsky, DeepFloyd IF) is not supported"),
                "resnet_skip_time_act" => Fixed(c, name, node, false),
                "resnet_out_scale_factor" => Fixed(c, name, node, 1.0),
                "time_cond_proj_dim" => Fixed(c, name, node, null, "timestep conditioning (latent consistency models) is not supported"),
                "conv_in_kernel" => Fixed(c, name, node, 3),
                "conv_out_kernel" => Fixed(c, name, node, 3),
                "attention_type" => Fixed(c, name, node, "default", "gated (GLIGEN) attention is not supported"),
                "cross_attention_norm" => Fixed(c, name, node, null),
                "reverse_transformer_layers_per_block" => Fixed(c, name, node, null),
                _ => node is null ? c : throw new ArgumentException($"{name} is {node.ToJsonString()}, which is not a UNet2DConditionModel setting this library knows.", name),
            };
        }
        c.Validate();
        return c;
    }

    private static void CheckAdditionEmbedType(string? type)
    {
        if (type is null) return;
        if (type == "text_time")
            throw new ArgumentException("addition_embed_type is \"text_time\": this is an SDXL UNet (pooled text and image-size embeddings added to the timestep embedding), which is not supported yet.", nameof(AdditionEmbedType));
        throw new ArgumentException($"addition_embed_type is {Quote(type)}; supported is null (Stable Diffusion 1.x/2.x).", nameof(AdditionEmbedType));
    }

    private static void CheckActivation(string name, string field, string property)
    {
        if (name is not ("silu" or "swish" or "mish" or "gelu" or "relu"))
            throw new ArgumentException($"{field} is {Quote(name)}; supported are silu (swish), mish, gelu and relu.", property);
    }

    private static void PerLevel(int[]? values, string field, string property, int levels, int minimum)
    {
        if (values is null || (values.Length != 1 && values.Length != levels))
            throw new ArgumentException($"{field} has {values?.Length ?? 0} entries; it needs one or one per level ({levels}).", property);
        foreach (int v in values)
            if (v < minimum) throw new ArgumentException($"{field} holds {v}; each entry must be at least {minimum}.", property);
    }

    private static string Quote(string? text) => text is null ? "null" : $"\"{text}\"";

    private static ArgumentException Unsupported(string field, JsonNode? node, string expected) =>
        new($"{field} is {node?.ToJsonString() ?? "null"}; it must be {expected}.", field);

    private static UNet2DConditionModelConfig Fixed(UNet2DConditionModelConfig c, string field, JsonNode? node, object? supported, string? why = null)
    {
        bool same = supported switch
        {
            null => node is null,
            bool b => node is JsonValue v && v.TryGetValue<bool>(out bool x) && x == b,
            string s => node is JsonValue v && v.TryGetValue<string>(out string? x) && x == s,
            _ => node is JsonValue v && v.TryGetValue<double>(out double x) && x == Convert.ToDouble(supported, System.Globalization.CultureInfo.InvariantCulture),
        };
        if (same) return c;
        string expected = supported switch { null => "null", bool b => b ? "true" : "false", string s => $"\"{s}\"", _ => Convert.ToString(supported, System.Globalization.CultureInfo.InvariantCulture)! };
        throw new ArgumentException($"{field} is {node?.ToJsonString() ?? "null"}; supported is {expected}{(why is null ? " (Stable Diffusion 1.x/2.x)" : $": {why}")}.", field);
    }

    private static int? SampleSizeOf(JsonNode? node)
    {
        if (node is null) return null;
        if (node is JsonArray pair)
        {
            int[] sides = List(node, "sample_size", Int);
            if (sides.Length != 2 || sides[0] != sides[1]) throw Unsupported("sample_size", node, "a whole number or a square [height, width]");
            return sides[0];
        }
        return Int(node, "sample_size");
    }

    // One encoder_hidden_states feeds every level, so a per-level list must name one width.
    private static int CrossAttentionDimOf(JsonNode? node)
    {
        int[] widths = OneOrList(node, "cross_attention_dim", Int);
        if (widths.Distinct().Count() != 1) throw Unsupported("cross_attention_dim", node, "one width (the text embeddings' width, which every level attends to)");
        return widths[0];
    }

    private static T[] OneOrList<T>(JsonNode? node, string field, Func<JsonNode?, string, T> one) =>
        node is JsonArray ? List(node, field, one) : [one(node, field)];

    private static T[] List<T>(JsonNode? node, string field, Func<JsonNode?, string, T> one) =>
        node is JsonArray list ? [.. list.Select(item => one(item, field))] : throw Unsupported(field, node, "a list");

    private static string[] Strings(JsonNode? node, string field) => List(node, field, (n, f) => String(n, f) ?? throw Unsupported(f, node, "a list of names"));

    private static string Name(JsonNode? node, string field) => String(node, field) ?? throw Unsupported(field, node, "a name");

    // A setting without effect on the blocks built here: its type is checked, its value ignored.
    private static UNet2DConditionModelConfig Inert<T>(UNet2DConditionModelConfig c, JsonNode? node, string field, Func<JsonNode?, string, T> read)
    {
        if (node is not null) read(node, field);
        return c;
    }

    private static int Int(JsonNode? node, string field) =>
        node is JsonValue v && v.TryGetValue<double>(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue   // 1 and 1.0 alike
            ? (int)x : throw Unsupported(field, node, "a whole number");

    private static double Number(JsonNode? node, string field) =>
        node is JsonValue v && v.TryGetValue<double>(out double x) ? x : throw Unsupported(field, node, "a number");

    // null is false, as diffusers tests these settings for truth (SDXL's files hold "upcast_attention": null).
    private static bool Bool(JsonNode? node, string field) =>
        node is null ? false : node is JsonValue v && v.TryGetValue<bool>(out bool x) ? x : throw Unsupported(field, node, "true or false");

    private static string? String(JsonNode? node, string field) =>
        node is null ? null : node is JsonValue v && v.TryGetValue<string>(out string? x) ? x : throw Unsupported(field, node, "a string or null");
}
