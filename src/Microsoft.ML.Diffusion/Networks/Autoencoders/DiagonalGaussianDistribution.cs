using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// diffusers' <c>DiagonalGaussianDistribution</c>: the VAE encoder's moments split along the channels into a mean and
/// a log-variance (clamped to [−30, 20]), with std = exp(logvar / 2). Owns its tensors; dispose it.
/// </summary>
internal sealed class DiagonalGaussianDistribution : IDisposable
{
    /// <summary>Clamping range of the log-variance, diffusers' (keeps exp finite).</summary>
    public const double MinLogVar = -30.0, MaxLogVar = 20.0;

    /// <summary>The means, (batch, latent_channels, h, w).</summary>
    public Tensor Mean { get; }

    /// <summary>The clamped log-variances, shaped as <see cref="Mean"/>.</summary>
    public Tensor LogVar { get; }

    /// <summary>The standard deviations, exp(logvar / 2).</summary>
    public Tensor Std { get; }

    /// <summary>Splits <paramref name="moments"/> (batch, 2·latent_channels, h, w): the first half of the channels is the mean.</summary>
    public DiagonalGaussianDistribution(Tensor moments)
    {
        ArgumentNullException.ThrowIfNull(moments);
        if (moments.dim() < 2 || moments.shape[1] % 2 != 0)
            throw new ArgumentException($"The moments have shape [{string.Join(", ", moments.shape)}]; they need an even number of channels (dimension 1).", nameof(moments));
        using var scope = NewDisposeScope();
        var parts = moments.chunk(2, 1);
        Mean = parts[0].MoveToOuterDisposeScope();
        LogVar = parts[1].clamp(MinLogVar, MaxLogVar).MoveToOuterDisposeScope();
        Std = (LogVar * 0.5).exp().MoveToOuterDisposeScope();
    }

    /// <summary>The variances, exp(logvar) (a new tensor, the caller's).</summary>
    public Tensor Var() => LogVar.exp();

    /// <summary>
    /// mean + std·ε with ε drawn on the CPU from <paramref name="generator"/> (a CPU generator; torch's global one when
    /// null) in the distribution's dtype and then moved to its device, as diffusers' <c>randn_tensor</c> does, so a
    /// seed gives diffusers' sample on every device.
    /// </summary>
    public Tensor Sample(Generator? generator = null)
    {
        using var drawn = randn(Mean.shape, dtype: Mean.dtype, device: CPU, generator: generator);
        using var noise = drawn.to(Mean.device);
        return Sample(noise);
    }

    /// <summary>mean + std·<paramref name="noise"/>, for noise the caller drew (standard normal, shaped as <see cref="Mean"/>).</summary>
    public Tensor Sample(Tensor noise)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (!noise.shape.SequenceEqual(Mean.shape))
            throw new ArgumentException($"The noise has shape [{string.Join(", ", noise.shape)}] but the distribution [{string.Join(", ", Mean.shape)}].", nameof(noise));
        using var scaled = Std * noise;
        return Mean + scaled;
    }

    /// <summary>The distribution's mode, its mean (a new handle, the caller's).</summary>
    public Tensor Mode() => Mean.alias();

    public void Dispose()
    {
        Mean.Dispose();
        LogVar.Dispose();
        Std.Dispose();
    }
}
