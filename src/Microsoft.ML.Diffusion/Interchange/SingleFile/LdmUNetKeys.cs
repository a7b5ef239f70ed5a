using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// The UNet's names in an original (ldm / A1111) Stable Diffusion checkpoint, <c>model.diffusion_model.*</c>, as
/// diffusers' <c>UNet2DConditionModel</c> names them (the renaming of diffusers v0.21.4's
/// <c>convert_ldm_unet_checkpoint</c>). The ldm UNet numbers its blocks flat: <c>input_blocks.0</c> is conv_in, then
/// per level <c>layers_per_block</c> blocks of a resnet (<c>.0</c>) and an optional transformer (<c>.1</c>), and, except on
/// the last level, one downsampler (<c>.0.op</c>); <c>output_blocks</c> has <c>layers_per_block + 1</c> blocks per level,
/// each a resnet, an optional transformer and, on the last block of all but the last level, an upsampler (a
/// <c>conv</c> right after the resnet or the transformer). Transformers' inner names are the same in both layouts, and
/// so are the tensors' shapes.
/// </summary>
internal static class LdmUNetKeys
{
    public const string Prefix = "model.diffusion_model.";

    private static readonly (string Ldm, string Diffusers)[] Resnet =
    [
        ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."),
        ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut."),
    ];

    private static readonly (string Ldm, string Diffusers)[] Fixed =
    [
        ("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
    ];

    /// <summary>
    /// The diffusers name of an ldm UNet name (without <see cref="Prefix"/>), or null when the name is not one of an SD
    /// UNet's (for example SDXL's <c>label_emb</c>, which a family check refuses first).
    /// </summary>
    public static string? ToDiffusers(string key, int layersPerBlock)
    {
        if (layersPerBlock < 1) throw new ArgumentOutOfRangeException(nameof(layersPerBlock), layersPerBlock, "A level has at least one layer.");
        foreach (var (ldm, diffusers) in Fixed)
        {
            if (key.StartsWith(ldm, StringComparison.Ordinal)) return Tail(diffusers, key, ldm.Length);
        }
        var parts = key.Split('.');
        if (parts[0] == "middle_block" && parts.Length >= 3)
        {
            string inner = string.Join('.', parts[2..]);
            return parts[1] switch
            {
                "0" => ResnetName("mid_block.resnets.0.", inner),
                "1" => $"mid_block.attentions.0.{inner}",
                "2" => ResnetName("mid_block.resnets.1.", inner),
                _ => null,
            };
        }
        if (parts.Length < 4 || !int.TryParse(parts[1], out int block) || !int.TryParse(parts[2], out int layer) || block < 0 || layer < 0) return null;
        string rest = string.Join('.', parts[3..]);
        switch (parts[0])
        {
            case "input_blocks" when block > 0:
            {
                int level = (block - 1) / (layersPerBlock + 1), index = (block - 1) % (layersPerBlock + 1);
                if (index == layersPerBlock)
                    return layer == 0 && parts[3] == "op" && parts.Length == 5 ? $"down_blocks.{level}.downsamplers.0.conv.{parts[4]}" : null;
                return layer switch
                {
                    0 => ResnetName($"down_blocks.{level}.resnets.{index}.", rest),
                    1 => $"down_blocks.{level}.attentions.{index}.{rest}",
                    _ => null,
                };
            }
            case "output_blocks":
            {
                int level = block / (layersPerBlock + 1), index = block % (layersPerBlock + 1);
                if (layer == 0) return ResnetName($"up_blocks.{level}.resnets.{index}.", rest);
                // The upsampler is the sub-block that is a bare convolution; a transformer has no 'conv' of its own.
                if (parts[3] == "conv" && parts.Length == 5)
                    return index == layersPerBlock && layer <= 2 ? $"up_blocks.{level}.upsamplers.0.conv.{parts[4]}" : null;
                return layer == 1 ? $"up_blocks.{level}.attentions.{index}.{rest}" : null;
            }
            default:
                return null;
        }
    }

    /// <summary>
    /// The renaming for <see cref="ModuleWeights.Load(TorchSharp.torch.nn.Module, ITensorFile, string?, Func{string, string?}?)"/>
    /// with <see cref="Prefix"/>: a name that is no part of an SD UNet is an error naming it, never dropped.
    /// </summary>
    public static Func<string, string?> Renamer(LdmUNetLayout layout, string source) =>
        key => ToDiffusers(key, layout.LayersPerBlock)
               ?? throw new CheckpointFormatException($"{source} has {Prefix}{key}, which is no part of a Stable Diffusion UNet.");

    private static string? ResnetName(string prefix, string rest)
    {
        foreach (var (ldm, diffusers) in Resnet)
        {
            if (rest.StartsWith(ldm, StringComparison.Ordinal)) return Tail(prefix + diffusers, rest, ldm.Length);
        }
        return null;
    }

    // A parameter name (weight, bias) after the module's prefix; nothing deeper.
    private static string? Tail(string prefix, string key, int start)
    {
        string tail = key[start..];
        return tail.Length > 0 && !tail.Contains('.') ? prefix + tail : null;
    }
}
