using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' <c>AutoencoderKL</c>, Stable Diffusion's VAE, with diffusers' parameter names (encoder.*, decoder.*,
/// quant_conv, post_quant_conv), so a diffusers <c>vae/diffusion_pytorch_model.safetensors</c> loads as it is (see
/// <see cref="AutoencoderKLFolder"/>). Images are in [−1, 1]. The latents are not scaled here: as in diffusers,
/// pipelines multiply encoded latents by <see cref="ScalingFactor"/> and divide by it before decoding.
/// </summary>
internal sealed class AutoencoderKL : Module<Tensor, Tensor>
{
    private readonly Encoder encoder;
    private readonly Decoder decoder;
    private readonly Conv2d quant_conv;
    private readonly Conv2d post_quant_conv;

    /// <summary>Builds the network with freshly initialised weights (from torch's global generator).</summary>
    public AutoencoderKL(AutoencoderKLConfig config) : base(nameof(AutoencoderKL))
    {
        Devices.DiffusionDevice.EnsureInitialized();   // native settings before the first weight is made
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        using (NewDisposeScope())
        {
            encoder = new Encoder(config);
            decoder = new Decoder(config);
            quant_conv = Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, 1);
            post_quant_conv = Conv2d(config.LatentChannels, config.LatentChannels, 1);
            RegisterComponents();
        }
    }

    /// <summary>The settings the network was built with.</summary>
    public AutoencoderKLConfig Config { get; }

    /// <summary>The latents' scale (config scaling_factor); the caller applies it.</summary>
    public double ScalingFactor => Config.ScalingFactor;

    /// <summary>
    /// Encodes images (batch, in_channels, H, W) in [−1, 1], H and W multiples of <see cref="AutoencoderKLConfig.DownscaleFactor"/>,
    /// into the latent distribution (batch, latent_channels, H/f, W/f), unscaled. The caller disposes it.
    /// </summary>
    public DiagonalGaussianDistribution Encode(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Config.InChannels)
            throw new ArgumentException($"The images have shape [{string.Join(", ", images.shape)}]; the VAE takes (batch, {Config.InChannels}, height, width).", nameof(images));
        using var h = encoder.forward(images);
        using var moments = quant_conv.forward(h);
        return new DiagonalGaussianDistribution(moments);
    }

    /// <summary>Decodes unscaled latents (batch, latent_channels, h, w) into images (batch, out_channels, h·f, w·f), roughly in [−1, 1] (not clamped).</summary>
    public Tensor Decode(Tensor latents)
    {
        ArgumentNullException.ThrowIfNull(latents);
        if (latents.dim() != 4 || latents.shape[1] != Config.LatentChannels)
            throw new ArgumentException($"The latents have shape [{string.Join(", ", latents.shape)}]; the VAE decodes (batch, {Config.LatentChannels}, height, width).", nameof(latents));
        using var scope = NewDisposeScope();
        using var z = post_quant_conv.forward(latents);
        return decoder.forward(z).MoveToOuterDisposeScope();
    }

    /// <summary>diffusers' forward without sampling: decodes the mode (mean) of the images' latent distribution.</summary>
    public override Tensor forward(Tensor images)
    {
        using var posterior = Encode(images);
        return Decode(posterior.Mean);
    }
}
