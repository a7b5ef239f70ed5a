using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' VAE <c>Encoder</c>: a 3×3 convolution into the first level's width, the down blocks, the mid block,
/// GroupNorm, SiLU and a 3×3 convolution to twice the latent channels (the latent distribution's mean and log-variance).
/// </summary>
internal sealed class Encoder : Module<Tensor, Tensor>
{
    // diffusers fixes the VAE's normalisation epsilon rather than reading it from the configuration.
    internal const double Eps = 1e-6;

    private readonly Conv2d conv_in;
    private readonly ModuleList<DownEncoderBlock2D> down_blocks = new();
    private readonly AutoencoderMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public Encoder(AutoencoderKLConfig config) : base(nameof(Encoder))
    {
        var channels = config.BlockOutChannels;
        conv_in = Conv2d(config.InChannels, channels[0], 3, padding: 1);
        int output = channels[0];
        for (int i = 0; i < channels.Length; i++)
        {
            int input = output;
            output = channels[i];
            down_blocks.Add(new DownEncoderBlock2D(input, output, config.LayersPerBlock, downsample: i < channels.Length - 1,
                config.NormNumGroups, Eps, config.ActFn));
        }
        mid_block = new AutoencoderMidBlock2D(channels[^1], config.NormNumGroups, Eps, config.ActFn);
        conv_norm_out = NormLayers.GroupNorm(config.NormNumGroups, channels[^1], Eps);
        conv_out = Conv2d(channels[^1], 2 * config.LatentChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <summary>Images (batch, in_channels, H, W) to moments (batch, 2·latent_channels, H/f, W/f), before quant_conv.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.forward(x);
        foreach (var block in down_blocks) h = FeatureMaps.Replace(h, block.forward(h), x);
        h = FeatureMaps.Replace(h, mid_block.forward(h), x);
        h = FeatureMaps.Replace(h, conv_norm_out.forward(h), x);
        h = FeatureMaps.Replace(h, functional.silu(h), x);   // diffusers' conv_act is SiLU whatever act_fn says
        return conv_out.forward(h).MoveToOuterDisposeScope();
    }
}
