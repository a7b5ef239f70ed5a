using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' VAE <c>Decoder</c>: a 3×3 convolution from the latent channels into the last level's width, the mid
/// block, the up blocks from the widest level down (each with one layer more than the encoder's), GroupNorm, SiLU and
/// a 3×3 convolution to the image channels.
/// </summary>
internal sealed class Decoder : Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly AutoencoderMidBlock2D mid_block;
    private readonly ModuleList<UpDecoderBlock2D> up_blocks = new();
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public Decoder(AutoencoderKLConfig config) : base(nameof(Decoder))
    {
        var reversed = config.BlockOutChannels.Reverse().ToArray();
        conv_in = Conv2d(config.LatentChannels, reversed[0], 3, padding: 1);
        mid_block = new AutoencoderMidBlock2D(reversed[0], config.NormNumGroups, Encoder.Eps, config.ActFn);
        int output = reversed[0];
        for (int i = 0; i < reversed.Length; i++)
        {
            int input = output;
            output = reversed[i];
            up_blocks.Add(new UpDecoderBlock2D(input, output, config.LayersPerBlock + 1, upsample: i < reversed.Length - 1,
                config.NormNumGroups, Encoder.Eps, config.ActFn));
        }
        conv_norm_out = NormLayers.GroupNorm(config.NormNumGroups, reversed[^1], Encoder.Eps);
        conv_out = Conv2d(reversed[^1], config.OutChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <summary>Latents (batch, latent_channels, h, w), after post_quant_conv, to images (batch, out_channels, h·f, w·f).</summary>
    public override Tensor forward(Tensor z)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.forward(z);
        h = FeatureMaps.Replace(h, mid_block.forward(h), z);
        foreach (var block in up_blocks) h = FeatureMaps.Replace(h, block.forward(h), z);
        h = FeatureMaps.Replace(h, conv_norm_out.forward(h), z);
        h = FeatureMaps.Replace(h, functional.silu(h), z);   // diffusers' conv_act is SiLU whatever act_fn says
        return conv_out.forward(h).MoveToOuterDisposeScope();
    }
}
