using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;

using Microsoft.ML.Diffusion.Networks.Diffusers;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers <c>config.json</c> of a <c>UNet2DModel</c> to and from <see cref="UNet2DModelOptions"/>. Fields missing
/// from a file take diffusers' defaults; a field or value the library does not support is an error that names it.
/// A learned null class is the last class embedding, named by <see cref="NullClassField"/>: diffusers drops fields
/// that start with an underscore, so to it the null class is one more class label.
/// </summary>
internal static class UNet2DModelConfig
{
    // Fields that only describe the file or that UNet2DModel ignores.
    private static readonly HashSet<string> Descriptive = ["_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"];

    /// <summary>The field that names the learned null class's label (<c>num_class_embeds</c> − 1), written only for such models.</summary>
    public const string NullClassField = "_null_class_label";

    private static readonly HashSet<string> Known =
    [
        "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type", "freq_shift", "flip_sin_to_cos",
        "down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "mid_block_scale_factor", "downsample_padding",
        "downsample_type", "upsample_type", "dropout", "act_fn", "attention_head_dim", "norm_num_groups", "norm_eps",
        "resnet_time_scale_shift", "add_attention", "class_embed_type", "num_class_embeds", "num_train_timesteps", NullClassField,
    ];

    public static UNet2DModelOptions Read(string json, string source)
    {
        JsonObject config;
        try
        {
            config = JsonNode.Parse(json) as JsonObject ?? throw new CheckpointFormatException($"{source} is not a JSON object.");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CheckpointFormatException($"{source} is not valid JSON: {e.Message}", e);
        }
        string className = Get(config, "_class_name", source, "UNet2DModel");
        if (className != "UNet2DModel")
            throw new CheckpointFormatException($"{source} describes a {className}; only UNet2DModel is supported.");
        foreach (var (name, value) in config)
            if (!Known.Contains(name) && !Descriptive.Contains(name))
                throw new CheckpointFormatException($"{source} has field \"{name}\" ({value?.ToJsonString() ?? "null"}), which UNet2DModel here does not support.");
        Expect(config, "class_embed_type", null, source);
        Expect(config, "downsample_type", "conv", source);
        Expect(config, "upsample_type", "conv", source);

        int channels = Get(config, "in_channels", source, 3);
        int outChannels = Get(config, "out_channels", source, 3);
        if (outChannels != channels)
            throw new CheckpointFormatException($"{source} has out_channels {outChannels} but in_channels {channels}; a noise predictor returns as many channels as it takes.");
        int? classes = Get<int?>(config, "num_class_embeds", source, null);
        int? nullClass = Get<int?>(config, NullClassField, source, null);
        if (nullClass is { } label && label != classes - 1)
            throw new CheckpointFormatException($"{source} has {NullClassField} {label}, but the null class is the last class embedding ({(classes is { } c ? $"num_class_embeds {c} − 1" : "and num_class_embeds is not set")}).");
        if (nullClass is not null) classes--;
        var options = new UNet2DModelOptions
        {
            ImageChannels = channels,
            ImageSize = SampleSize(config, source),
            Condition = classes is { } n ? new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = n } : new ConditioningOptions(),
            LearnedNullClass = nullClass is not null,
            DownBlockTypes = Get(config, "down_block_types", source, new UNet2DModelOptions().DownBlockTypes),
            UpBlockTypes = Get(config, "up_block_types", source, new UNet2DModelOptions().UpBlockTypes),
            BlockOutChannels = Get(config, "block_out_channels", source, new UNet2DModelOptions().BlockOutChannels),
            LayersPerBlock = Get(config, "layers_per_block", source, 2),
            NormNumGroups = Get(config, "norm_num_groups", source, 32),
            NormEps = Get(config, "norm_eps", source, 1e-5),
            ActFn = Get(config, "act_fn", source, "silu"),
            TimeEmbeddingType = Get(config, "time_embedding_type", source, "positional"),
            FlipSinToCos = Get(config, "flip_sin_to_cos", source, true),
            FreqShift = Get(config, "freq_shift", source, 0.0),
            DownsamplePadding = Get(config, "downsample_padding", source, 1),
            AttentionHeadDim = Get<int?>(config, "attention_head_dim", source, 8),
            AddAttention = Get(config, "add_attention", source, true),
            ResnetTimeScaleShift = Get(config, "resnet_time_scale_shift", source, "default"),
            CenterInputSample = Get(config, "center_input_sample", source, false),
            MidBlockScaleFactor = Get(config, "mid_block_scale_factor", source, 1.0),
            Dropout = Get(config, "dropout", source, 0.0),
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"{source} describes a UNet2DModel this library cannot build: {e.Message}", e);
        }
        return options;
    }

    /// <summary>The config.json diffusers' <c>UNet2DModel.from_pretrained</c> reads for <paramref name="o"/>, every field written out.</summary>
    public static string Write(UNet2DModelOptions o)
    {
        var config = new JsonObject
        {
            ["_class_name"] = "UNet2DModel",
            ["_diffusers_version"] = DiffusersVersion,
            ["act_fn"] = o.ActFn,
            ["add_attention"] = o.AddAttention,
            ["attention_head_dim"] = o.AttentionHeadDim,
            ["block_out_channels"] = new JsonArray([.. o.BlockOutChannels.Select(c => (JsonNode)c)]),
            ["center_input_sample"] = o.CenterInputSample,
            ["class_embed_type"] = null,
            ["down_block_types"] = new JsonArray([.. o.DownBlockTypes.Select(t => (JsonNode)t)]),
            ["downsample_padding"] = o.DownsamplePadding,
            ["downsample_type"] = "conv",
            ["dropout"] = o.Dropout,
            ["flip_sin_to_cos"] = o.FlipSinToCos,
            ["freq_shift"] = o.FreqShift,
            ["in_channels"] = o.ImageChannels,
            ["layers_per_block"] = o.LayersPerBlock,
            ["mid_block_scale_factor"] = o.MidBlockScaleFactor,
            ["norm_eps"] = o.NormEps,
            ["norm_num_groups"] = o.NormNumGroups,
            ["num_class_embeds"] = o.Condition.Kind == ConditionKind.Class ? o.Condition.ClassCount + (o.LearnedNullClass ? 1 : 0) : null,
            ["out_channels"] = o.ImageChannels,
            ["resnet_time_scale_shift"] = o.ResnetTimeScaleShift,
            ["sample_size"] = o.ImageSize,
            ["time_embedding_type"] = o.TimeEmbeddingType,
            ["up_block_types"] = new JsonArray([.. o.UpBlockTypes.Select(t => (JsonNode)t)]),
            ["upsample_type"] = "conv",
        };
        if (o.LearnedNullClass) config[NullClassField] = o.Condition.ClassCount;
        return config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The diffusers version whose formats the files written here follow.</summary>
    public const string DiffusersVersion = "0.21.4";

    private static int SampleSize(JsonObject config, string source)
    {
        var node = config["sample_size"] ?? throw new CheckpointFormatException($"{source} has no sample_size; the image size must be known.");
        if (node is JsonArray pair)
        {
            int[] sides = Get<int[]>(config, "sample_size", source, []);
            if (sides.Length != 2 || sides[0] != sides[1])
                throw new CheckpointFormatException($"{source} has sample_size {pair.ToJsonString()}; only square images are supported.");
            return sides[0];
        }
        return Get(config, "sample_size", source, 0);
    }

    private static void Expect(JsonObject config, string field, string? supported, string source)
    {
        if (!config.TryGetPropertyValue(field, out var node)) return;
        string? value = Get<string?>(config, field, source, null);
        if (value != supported)
            throw new CheckpointFormatException($"{source} has {field} {node?.ToJsonString() ?? "null"}; supported is {(supported is null ? "null" : $"\"{supported}\"")}.");
    }

    private static T Get<T>(JsonObject config, string field, string source, T fallback)
    {
        if (!config.TryGetPropertyValue(field, out var node)) return fallback;
        if (node is null) return default(T) is null ? default! : throw new CheckpointFormatException($"{source} has {field} null; a value is needed.");
        try
        {
            if (typeof(T) == typeof(int) || typeof(T) == typeof(int?))
            {
                double number = node.GetValue<double>();   // 1 and 1.0 alike
                if (number != Math.Floor(number)) throw new FormatException();
                return (T)(object)(int)number;
            }
            return System.Text.Json.JsonSerializer.Deserialize<T>(node) ?? fallback;
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or System.Text.Json.JsonException)
        {
            throw new CheckpointFormatException($"{source} has {field} {node.ToJsonString()}, which is not a {Describe(typeof(T))}.", e);
        }
    }

    private static string Describe(Type type) => Nullable.GetUnderlyingType(type) is { } inner ? Describe(inner) : type switch
    {
        _ when type == typeof(int) => "whole number",
        _ when type == typeof(double) => "number",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(string) => "string",
        _ when type == typeof(int[]) => "list of whole numbers",
        _ when type == typeof(string[]) => "list of strings",
        _ => type.Name,
    };
}
