using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// Transformer-style sinusoidal features of the timestep t (Vaswani et al.; DDPM appendix B):
/// [sin(t·ω_k), cos(t·ω_k)] with ω_k = 10000^(−k/half). This is how the one network knows the noise level.
/// </summary>
internal sealed class SinusoidalTimestepEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Tensor frequencies;

    /// <summary>Creates an embedding of width <paramref name="dimension"/> (even).</summary>
    public SinusoidalTimestepEmbedding(int dimension) : base(nameof(SinusoidalTimestepEmbedding))
    {
        if (dimension % 2 != 0) throw new ArgumentException("The embedding width must be even.", nameof(dimension));
        int half = dimension / 2;
        using (var scope = NewDisposeScope())
            frequencies = exp(arange(half, dtype: float32) * (-Math.Log(10000.0) / half)).MoveToOuterDisposeScope().DetachFromDisposeScope();
        register_buffer(nameof(frequencies), frequencies, persistent: false);
    }

    /// <summary>Embeds timesteps (N) as (N, dimension).</summary>
    public override Tensor forward(Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var args = timesteps.to_type(float32).unsqueeze(1) * frequencies.unsqueeze(0);
        return cat([args.sin(), args.cos()], 1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        // A non-persistent buffer is not disposed with the module.
        if (disposing) frequencies.Dispose();
        base.Dispose(disposing);
    }
}
