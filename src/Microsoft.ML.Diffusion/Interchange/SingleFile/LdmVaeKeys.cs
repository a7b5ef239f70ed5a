using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// The autoencoder's names in an original Stable Diffusion checkpoint, <c>first_stage_model.*</c>, as diffusers'
/// <c>AutoencoderKL</c> names them (the renaming of diffusers v0.21.4's <c>convert_ldm_vae_checkpoint</c>). The
/// encoder's <c>down.{i}.block.{j}</c> are <c>down_blocks.{i}.resnets.{j}</c>; the decoder numbers its levels from the
/// bottom (<c>up.{levels-1}</c> is diffusers' <c>up_blocks.0</c>); <c>mid.block_1/2</c> are the mid-block's resnets and
/// <c>mid.attn_1</c> its attention, whose q, k, v and proj_out are 1×1 convolutions ([C, C, 1, 1]) where diffusers has
/// linear layers to_q, to_k, to_v and to_out.0 ([C, C]): the same values, loaded by dropping the unit dimensions (see
/// <see cref="IsConvolutionAsLinear"/>).
/// </summary>
internal static class LdmVaeKeys
{
    public const string Prefix = "first_stage_model.";

    private static readonly (string Ldm, string Diffusers)[] Attention =
    [
        ("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0."),
    ];

    private static readonly string[] ResnetParts = ["norm1", "conv1", "norm2", "conv2"];

    /// <summary>The diffusers name of an ldm autoencoder name (without <see cref="Prefix"/>), or null when it is not one.</summary>
    /// <param name="key">The ldm name, for example <c>decoder.up.3.block.0.conv1.weight</c>.</param>
    /// <param name="levels">The number of resolution levels (4 in Stable Diffusion): the decoder's levels are numbered from the bottom.</param>
    public static string? ToDiffusers(string key, int levels)
    {
        if (levels < 1) throw new ArgumentOutOfRangeException(nameof(levels), levels, "An autoencoder has at least one level.");
        var parts = key.Split('.');
        string p = parts[^1];
        if (p is not ("weight" or "bias")) return null;
        if (parts.Length == 2 && parts[0] is "quant_conv" or "post_quant_conv") return key;
        if (parts.Length < 3 || parts[0] is not ("encoder" or "decoder")) return null;
        string side = parts[0];
        switch (parts.Length, parts[1])
        {
            case (3, "conv_in" or "conv_out"):
                return key;
            case (3, "norm_out"):
                return $"{side}.conv_norm_out.{p}";
            case (5, "mid") when parts[2] is "block_1" or "block_2":
                return Resnet($"{side}.mid_block.resnets.{(parts[2] == "block_1" ? 0 : 1)}.", parts[3], p);
            case (5, "mid") when parts[2] == "attn_1":
                var attention = Array.Find(Attention, a => a.Ldm == parts[3] + ".");
                return attention.Diffusers is null ? null : $"{side}.mid_block.attentions.0.{attention.Diffusers}{p}";
            case (6 or 7, "down" or "up"):
                bool down = parts[1] == "down";
                if (down != (side == "encoder") || !int.TryParse(parts[2], out int level) || level < 0 || level >= levels) return null;
                // The decoder's ldm levels count from the bottom, diffusers' from the top.
                int block = down ? level : levels - 1 - level;
                string blocks = down ? "down_blocks" : "up_blocks";
                if (parts.Length == 6)
                {
                    bool resamples = down ? level < levels - 1 : level > 0;   // no downsampler at the bottom, no upsampler at the top
                    var (ldm, diffusers) = down ? ("downsample", "downsamplers") : ("upsample", "upsamplers");
                    return parts[3] == ldm && parts[4] == "conv" && resamples ? $"{side}.{blocks}.{block}.{diffusers}.0.conv.{p}" : null;
                }
                return parts[3] == "block" && int.TryParse(parts[4], out int j) && j >= 0 ? Resnet($"{side}.{blocks}.{block}.resnets.{j}.", parts[5], p) : null;
            default:
                return null;
        }
    }

    /// <summary>
    /// The renaming for <see cref="ModuleWeights.Load(TorchSharp.torch.nn.Module, ITensorFile, string?, Func{string, string?}?)"/>
    /// with <see cref="Prefix"/>: the training loss (<c>loss.*</c>: LPIPS, discriminator) is left out; any other name that
    /// is no part of the autoencoder is an error naming it. ModuleWeights loads the attention's 1×1 convolutions into
    /// the linear layers by itself.
    /// </summary>
    public static Func<string, string?> Renamer(LdmVaeLayout layout, string source) =>
        key => key.StartsWith("loss.", StringComparison.Ordinal) ? null
               : ToDiffusers(key, layout.BlockOutChannels.Length)
                 ?? throw new CheckpointFormatException($"{source} has {Prefix}{key}, which is no part of a Stable Diffusion autoencoder.");

    /// <summary>Whether a diffusers autoencoder name is a linear weight that the ldm layout stores as a 1×1 convolution.</summary>
    public static bool IsConvolutionAsLinear(string diffusersKey) =>
        diffusersKey.Contains(".mid_block.attentions.0.to_", StringComparison.Ordinal) && diffusersKey.EndsWith(".weight", StringComparison.Ordinal);

    private static string? Resnet(string prefix, string module, string param) =>
        module == "nin_shortcut" ? $"{prefix}conv_shortcut.{param}" : ResnetParts.Contains(module) ? $"{prefix}{module}.{param}" : null;
}
