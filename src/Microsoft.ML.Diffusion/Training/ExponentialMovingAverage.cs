using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// Keeps θ_ema ← d·θ_ema + (1 − d)·θ after each optimiser step. Sampling from the averaged weights gives
/// markedly better images than the raw weights (DDPM used d = 0.9999).
/// </summary>
internal sealed class ExponentialMovingAverage
{
    private readonly nn.Module _source;
    private readonly nn.Module _average;
    private readonly double _decay;

    /// <summary>Tracks <paramref name="source"/> in <paramref name="average"/>, which must have the same shape.</summary>
    public ExponentialMovingAverage(nn.Module source, nn.Module average, double decay)
    {
        _source = source;
        _average = average;
        _decay = decay;
        CopyFromSource();
    }

    /// <summary>The decay actually used at <paramref name="step"/>: a warm-up so the first steps count.</summary>
    public double DecayAt(long step) => Math.Min(_decay, (1.0 + step) / (10.0 + step));

    /// <summary>Moves the average toward the source's current weights.</summary>
    public void Update(long step)
    {
        double d = DecayAt(step);
        using var noGrad = no_grad();
        foreach (var (avg, src) in _average.parameters().Zip(_source.parameters()))
            avg.mul_(d).add_(src, alpha: 1.0 - d);
    }

    /// <summary>Sets the average equal to the source's weights.</summary>
    public void CopyFromSource()
    {
        using var noGrad = no_grad();
        foreach (var (avg, src) in _average.parameters().Zip(_source.parameters()))
            avg.copy_(src);
    }
}
