using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Diffusers;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// The settings of diffusers' <c>AutoencoderKL</c> (a <c>vae/config.json</c>), with diffusers' defaults. Only the
/// plain encoder and decoder blocks (DownEncoderBlock2D, UpDecoderBlock2D) are supported, as every Stable Diffusion
/// VAE uses.
/// </summary>
internal sealed class AutoencoderKLConfig
{
    public const string DownEncoderBlock = "DownEncoderBlock2D";
    public const string UpDecoderBlock = "UpDecoderBlock2D";

    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public string[] DownBlockTypes { get; init; } = [DownEncoderBlock];
    public string[] UpBlockTypes { get; init; } = [UpDecoderBlock];
    public int[] BlockOutChannels { get; init; } = [64];
    public int LayersPerBlock { get; init; } = 1;
    public string ActFn { get; init; } = "silu";
    public int LatentChannels { get; init; } = 4;
    public int NormNumGroups { get; init; } = 32;

    /// <summary>The image size the VAE was trained on; diffusers uses it only for tiled encoding and decoding.</summary>
    public int SampleSize { get; init; } = 32;

    /// <summary>The latents' scale: pipelines multiply encoded latents by it and divide latents by it before decoding.</summary>
    public double ScalingFactor { get; init; } = 0.18215;

    /// <summary>Whether pipelines should run the VAE in float32 even when the rest runs in half precision.</summary>
    public bool ForceUpcast { get; init; } = true;

    /// <summary>How many times smaller the latents are than the image on each side (2 per downsampling level).</summary>
    public int DownscaleFactor => 1 << (BlockOutChannels.Length - 1);

    /// <summary>Stable Diffusion v1's and v2's VAE (stabilityai/sd-vae-ft-mse and the VAE of every SD 1.x/2.x pipeline).</summary>
    public static AutoencoderKLConfig StableDiffusion => new()
    {
        DownBlockTypes = [DownEncoderBlock, DownEncoderBlock, DownEncoderBlock, DownEncoderBlock],
        UpBlockTypes = [UpDecoderBlock, UpDecoderBlock, UpDecoderBlock, UpDecoderBlock],
        BlockOutChannels = [128, 256, 512, 512],
        LayersPerBlock = 2,
        SampleSize = 512,
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting the network cannot be built with.</summary>
    public void Validate()
    {
        if (InChannels < 1 || OutChannels < 1 || LatentChannels < 1)
            throw new ArgumentException($"in_channels ({InChannels}), out_channels ({OutChannels}) and latent_channels ({LatentChannels}) must be positive.");
        if (BlockOutChannels is not { Length: > 0 })
            throw new ArgumentException("block_out_channels must name at least one level.");
        if (DownBlockTypes is null || DownBlockTypes.Length != BlockOutChannels.Length)
            throw new ArgumentException($"down_block_types has {DownBlockTypes?.Length ?? 0} entries but block_out_channels has {BlockOutChannels.Length}; they must match.");
        if (UpBlockTypes is null || UpBlockTypes.Length != BlockOutChannels.Length)
            throw new ArgumentException($"up_block_types has {UpBlockTypes?.Length ?? 0} entries but block_out_channels has {BlockOutChannels.Length}; they must match.");
        foreach (string type in DownBlockTypes)
            if (type != DownEncoderBlock)
                throw new ArgumentException($"down_block_types holds \"{type}\"; the only supported AutoencoderKL down block is {DownEncoderBlock}.");
        foreach (string type in UpBlockTypes)
            if (type != UpDecoderBlock)
                throw new ArgumentException($"up_block_types holds \"{type}\"; the only supported AutoencoderKL up block is {UpDecoderBlock}.");
        if (LayersPerBlock < 1) throw new ArgumentException($"layers_per_block is {LayersPerBlock}; it must be at least 1.");
        if (NormNumGroups < 1) throw new ArgumentException($"norm_num_groups is {NormNumGroups}; it must be positive.");
        foreach (int c in BlockOutChannels)
            if (c < 1 || c % NormNumGroups != 0)
                throw new ArgumentException($"block_out_channels holds {c}, which is not a positive multiple of norm_num_groups ({NormNumGroups}).");
        Activation.Get(ActFn);   // throws naming an unknown act_fn
        if (!(ScalingFactor > 0) || double.IsInfinity(ScalingFactor))
            throw new ArgumentException($"scaling_factor is {ScalingFactor}; it must be a positive number.");
    }

    // Fields that only describe the file.
    private static readonly HashSet<string> Descriptive = ["_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"];

    private static readonly HashSet<string> Known =
    [
        "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "act_fn",
        "latent_channels", "norm_num_groups", "sample_size", "scaling_factor", "force_upcast",
    ];

    // Fields later diffusers versions write; accepted at the values that mean v0.21's network and scaling.
    private static readonly Dictionary<string, JsonNode?> Later = new()
    {
        ["shift_factor"] = null,
        ["latents_mean"] = null,
        ["latents_std"] = null,
        ["use_quant_conv"] = true,
        ["use_post_quant_conv"] = true,
        ["mid_block_add_attention"] = true,
    };

    /// <summary>Reads a diffusers <c>config.json</c>; <paramref name="source"/> names the file in errors (CheckpointFormatException).</summary>
    public static AutoencoderKLConfig Read(string json, string source)
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
        string className = Get(config, "_class_name", source, "AutoencoderKL");
        if (className != "AutoencoderKL")
            throw new CheckpointFormatException($"{source} describes a {className}; only AutoencoderKL is supported.");
        foreach (var (name, value) in config)
        {
            if (Known.Contains(name) || Descriptive.Contains(name)) continue;
            if (Later.TryGetValue(name, out var neutral))
            {
                if (!JsonNode.DeepEquals(value, neutral))
                    throw new CheckpointFormatException($"{source} has {name} {value?.ToJsonString() ?? "null"}; supported is {neutral?.ToJsonString() ?? "null"}.");
                continue;
            }
            throw new CheckpointFormatException($"{source} has field \"{name}\" ({value?.ToJsonString() ?? "null"}), which AutoencoderKL here does not support.");
        }
        var defaults = new AutoencoderKLConfig();
        var result = new AutoencoderKLConfig
        {
            InChannels = Get(config, "in_channels", source, defaults.InChannels),
            OutChannels = Get(config, "out_channels", source, defaults.OutChannels),
            DownBlockTypes = Get(config, "down_block_types", source, defaults.DownBlockTypes),
            UpBlockTypes = Get(config, "up_block_types", source, defaults.UpBlockTypes),
            BlockOutChannels = Get(config, "block_out_channels", source, defaults.BlockOutChannels),
            LayersPerBlock = Get(config, "layers_per_block", source, defaults.LayersPerBlock),
            ActFn = Get(config, "act_fn", source, defaults.ActFn),
            LatentChannels = Get(config, "latent_channels", source, defaults.LatentChannels),
            NormNumGroups = Get(config, "norm_num_groups", source, defaults.NormNumGroups),
            SampleSize = SampleSizeOf(config, source, defaults.SampleSize),
            ScalingFactor = Get(config, "scaling_factor", source, defaults.ScalingFactor),
            ForceUpcast = Get(config, "force_upcast", source, defaults.ForceUpcast),
        };
        try
        {
            result.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"{source} describes an AutoencoderKL this library cannot build: {e.Message}", e);
        }
        return result;
    }

    /// <summary>The config.json diffusers' <c>AutoencoderKL.from_pretrained</c> reads for these settings, every field written out.</summary>
    public string Write()
    {
        var config = new JsonObject
        {
            ["_class_name"] = "AutoencoderKL",
            ["_diffusers_version"] = "0.21.4",
            ["act_fn"] = ActFn,
            ["block_out_channels"] = new JsonArray([.. BlockOutChannels.Select(c => (JsonNode)c)]),
            ["down_block_types"] = new JsonArray([.. DownBlockTypes.Select(t => (JsonNode)t)]),
            ["force_upcast"] = ForceUpcast,
            ["in_channels"] = InChannels,
            ["latent_channels"] = LatentChannels,
            ["layers_per_block"] = LayersPerBlock,
            ["norm_num_groups"] = NormNumGroups,
            ["out_channels"] = OutChannels,
            ["sample_size"] = SampleSize,
            ["scaling_factor"] = ScalingFactor,
            ["up_block_types"] = new JsonArray([.. UpBlockTypes.Select(t => (JsonNode)t)]),
        };
        return config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    // An image size, or a [height, width] pair of equal sides (the library's images are square).
    private static int SampleSizeOf(JsonObject config, string source, int fallback)
    {
        if (config["sample_size"] is not JsonArray pair) return Get(config, "sample_size", source, fallback);
        int[] sides = Get<int[]>(config, "sample_size", source, []);
        if (sides.Length != 2 || sides[0] != sides[1])
            throw new CheckpointFormatException($"{source} has sample_size {pair.ToJsonString()}; only square images are supported.");
        return sides[0];
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
                if (number != Math.Floor(number)) throw new FormatException();
                return (T)(object)(int)number;
            }
            return JsonSerializer.Deserialize<T>(node) ?? throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or JsonException or OverflowException)
        {
            throw new CheckpointFormatException($"{source} has {field} {node.ToJsonString()}, which is not a {Describe(typeof(T))}.", e);
        }
    }

    private static string Describe(Type type) => type switch
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
