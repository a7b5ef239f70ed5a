using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// The library's first UNet, unconditional or class-conditional, as diffusers' <c>UNet2DModel</c>: the two are
/// the same network (DDPM's residual blocks, attention per level, a mid block of residual–attention–residual,
/// strided-convolution downsampling, nearest-neighbour upsampling), so only names change, the fused 1×1 qkv
/// convolution splits into to_q/to_k/to_v and the 1×1 convolutions of attention become linear layers. The class
/// embedding's last row is the null class in both. Text- and vector-conditional UNets have no UNet2DModel
/// equivalent (their prompt path differs from UNet2DConditionModel's transformer blocks).
/// </summary>
internal static partial class UNetAsUNet2DModel
{
    /// <summary>
    /// The UNet2DModel options that compute what <paramref name="u"/> does, or null with the reason when none does.
    /// </summary>
    public static UNet2DModelOptions? Options(UNetOptions u, out string? why)
    {
        ArgumentNullException.ThrowIfNull(u);
        why = null;
        if (u.Condition.Kind is not (ConditionKind.None or ConditionKind.Class))
        {
            why = $"a {u.Condition.Kind.ToString().ToLowerInvariant()}-conditional first UNet adds the pooled condition to the time embedding and attends to it without transformer blocks, which no diffusers network does";
            return null;
        }
        var shape = (UNet2DModelOptions)DiffusersUNetShapes.Like(u);
        // UNet2DModel has one channels-per-head for all attention layers; the UNet one head count. They agree when
        // there is one head, or every attending level (the mid block always attends) is equally wide.
        int[] channels = u.LevelChannels();
        var attention = new HashSet<int>(u.AttentionResolutions ?? []);
        var widths = Enumerable.Range(0, channels.Length)
            .Where(i => attention.Contains(u.ImageSize >> i) || i == channels.Length - 1)
            .Select(i => channels[i]).Distinct().ToArray();
        if (u.AttentionHeads != 1 && widths.Length > 1)
        {
            why = $"its {u.AttentionHeads} attention heads span levels of {string.Join(" and ", widths)} channels, and UNet2DModel's attention_head_dim is one width for every level";
            return null;
        }
        // The UNet's sinusoidal features put sines first, with frequencies 10000^(−k/half): flip_sin_to_cos false, freq_shift 0.
        return shape with { FlipSinToCos = false, FreqShift = 0 };
    }

    /// <summary>
    /// The UNet's weights under UNet2DModel's names and shapes (new tensors; the caller disposes them). The options must
    /// be ones <see cref="Options"/> converts.
    /// </summary>
    public static List<(string Name, Tensor Value)> Weights(UNetOptions u, IEnumerable<KeyValuePair<string, Tensor>> weights)
    {
        ArgumentNullException.ThrowIfNull(u);
        ArgumentNullException.ThrowIfNull(weights);
        int perLevel = u.ResidualBlocksPerLevel;
        var result = new List<(string, Tensor)>();
        try
        {
            foreach (var (name, value) in weights)
            {
                // The scope frees the views (detach, flatten, chunk) the renaming makes; the clones it returns move out.
                using var scope = NewDisposeScope();
                foreach (var (renamed, tensor) in Rename(name, value.detach(), perLevel))
                    result.Add((renamed, tensor.MoveToOuterDisposeScope()));
            }
        }
        catch
        {
            foreach (var (_, t) in result) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// A LoRA layer of the UNet's module <paramref name="module"/> as layers of UNet2DModel's modules, renamed as the
    /// weights are: the fused qkv's becomes to_q's, to_k's and to_v's (each with down flattened, and a third of up's rows),
    /// the 1×1 output projection's becomes to_out.0's (factors flattened), any other is the same layer under its new name.
    /// Alpha, rank and the update they give are unchanged. Null when the UNet has no such module; otherwise new tensors
    /// the caller disposes.
    /// </summary>
    public static List<(string Module, Tensor Down, Tensor Up)>? Lora(UNetOptions u, string module, Tensor down, Tensor up)
    {
        ArgumentNullException.ThrowIfNull(u);
        ArgumentException.ThrowIfNullOrEmpty(module);
        ArgumentNullException.ThrowIfNull(down);
        ArgumentNullException.ThrowIfNull(up);
        if (Map(module + ".weight", u.ResidualBlocksPerLevel) is not { } mapped) return null;
        var (names, reshape) = mapped;
        using var scope = NewDisposeScope();
        var (d, ups) = reshape == Reshape.Keep ? (down.detach(), new[] { up.detach() }) : (down.detach().flatten(1), Parts(up.detach().flatten(1), reshape));
        return names.Zip(ups, (name, part) => (name[..^".weight".Length], d.clone().MoveToOuterDisposeScope(), part.clone().MoveToOuterDisposeScope())).ToList();
    }

    private static List<(string, Tensor)> Rename(string name, Tensor value, int perLevel)
    {
        var (names, reshape) = Map(name, perLevel) ?? throw new InvalidOperationException($"The UNet parameter '{name}' has no UNet2DModel counterpart.");
        var flat = reshape == Reshape.Keep || value.dim() < 2 ? value : value.flatten(1);
        return names.Zip(Parts(flat, reshape), (n, part) => (n, part.clone())).ToList();
    }

    private static Tensor[] Parts(Tensor value, Reshape reshape) => reshape == Reshape.Split ? value.chunk(3, 0) : [value];

    // How a weight's values change on the way: kept, the fused qkv's split in three along its rows (to_q, to_k, to_v), a
    // 1×1 convolution's weight flattened to a linear one's (flattening a bias changes nothing).
    private enum Reshape
    {
        Keep,
        Split,
        Flatten,
    }

    // The UNet2DModel parameters a UNet parameter becomes (three for the fused qkv's), or null when the UNet has no such one.
    private static (string[] Names, Reshape Reshape)? Map(string name, int perLevel)
    {
        string? simple = name switch
        {
            "time_embedding.linear1.weight" => "time_embedding.linear_1.weight",
            "time_embedding.linear1.bias" => "time_embedding.linear_1.bias",
            "time_embedding.linear2.weight" => "time_embedding.linear_2.weight",
            "time_embedding.linear2.bias" => "time_embedding.linear_2.bias",
            "condition_encoder.class_embedding.weight" => "class_embedding.weight",
            _ => null,
        };
        if (simple is not null) return ([simple], Reshape.Keep);
        foreach (var (pattern, target) in Prefixes)
        {
            var m = pattern.Match(name);
            if (!m.Success) continue;
            string prefix = target(m, perLevel);
            string rest = m.Groups["rest"].Value;
            return m.Groups["part"].Value == "attention" ? Attention(prefix, rest) : ([prefix + Residual(rest)], Reshape.Keep);
        }
        return null;
    }

    // (pattern over the UNet's name, the UNet2DModel prefix it maps to); groups: part (residual/attention/…), rest.
    private static readonly (Regex Pattern, Func<Match, int, string> Target)[] Prefixes =
    [
        (DownBlock(), (m, k) => $"down_blocks.{Int(m, "i") / k}.{(m.Groups["part"].Value == "residual" ? "resnets" : "attentions")}.{Int(m, "i") % k}."),
        (UpBlock(), (m, k) => $"up_blocks.{Int(m, "i") / (k + 1)}.{(m.Groups["part"].Value == "residual" ? "resnets" : "attentions")}.{Int(m, "i") % (k + 1)}."),
        (MiddleBlock1(), (m, _) => m.Groups["part"].Value == "residual" ? "mid_block.resnets.0." : "mid_block.attentions.0."),
        (MiddleBlock2(), (_, _) => "mid_block.resnets.1."),
        (Downsampler(), (m, _) => $"down_blocks.{Int(m, "i")}.downsamplers.0."),
        (Upsampler(), (m, _) => $"up_blocks.{Int(m, "i")}.upsamplers.0."),
        (Plain(), (m, _) => m.Groups["part"].Value switch { "input_conv" => "conv_in.", "output_norm" => "conv_norm_out.", _ => "conv_out." }),
    ];

    private static int Int(Match m, string group) => int.Parse(m.Groups[group].Value, System.Globalization.CultureInfo.InvariantCulture);

    private static string Residual(string rest)
    {
        int dot = rest.IndexOf('.');
        string layer = dot < 0 ? rest : rest[..dot];
        string tail = dot < 0 ? "" : rest[dot..];
        return (layer switch { "time_projection" => "time_emb_proj", "skip" => "conv_shortcut", _ => layer }) + tail;
    }

    // norm → group_norm; the fused qkv 1×1 convolution → to_q, to_k, to_v; the 1×1 output projection → to_out.0.
    private static (string[], Reshape)? Attention(string prefix, string rest) => rest switch
    {
        "norm.weight" or "norm.bias" => ([prefix + "group_" + rest], Reshape.Keep),
        "qkv.weight" or "qkv.bias" => ([prefix + "to_q." + rest[4..], prefix + "to_k." + rest[4..], prefix + "to_v." + rest[4..]], Reshape.Split),
        "projection.weight" => ([prefix + "to_out.0.weight"], Reshape.Flatten),
        "projection.bias" => ([prefix + "to_out.0.bias"], Reshape.Keep),
        _ => null,
    };

    [GeneratedRegex(@"^down_blocks\.(?<i>\d+)\.(?<part>residual|attention)\.(?<rest>.+)$")]
    private static partial Regex DownBlock();

    [GeneratedRegex(@"^up_blocks\.(?<i>\d+)\.(?<part>residual|attention)\.(?<rest>.+)$")]
    private static partial Regex UpBlock();

    [GeneratedRegex(@"^middle_block1\.(?<part>residual|attention)\.(?<rest>.+)$")]
    private static partial Regex MiddleBlock1();

    [GeneratedRegex(@"^middle_block2\.(?<part>)(?<rest>.+)$")]
    private static partial Regex MiddleBlock2();

    [GeneratedRegex(@"^downsamplers\.(?<i>\d+)\.(?<part>)(?<rest>.+)$")]
    private static partial Regex Downsampler();

    [GeneratedRegex(@"^upsamplers\.(?<i>\d+)\.(?<part>)(?<rest>.+)$")]
    private static partial Regex Upsampler();

    [GeneratedRegex(@"^(?<part>input_conv|output_norm|output_conv)\.(?<rest>.+)$")]
    private static partial Regex Plain();
}
