using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// Seeded Gaussian noise for a batch: either one generator for the whole batch, or one per sample so
/// that each row's image depends only on its own seed. Noise is drawn on the CPU and then moved, so a
/// seed gives the same noise on every device.
/// </summary>
internal sealed class NoiseSource : IDisposable
{
    private readonly Generator[] _generators;

    private NoiseSource(Generator[] generators) => _generators = generators;

    /// <summary>One generator seeded with <paramref name="seed"/> for the whole batch.</summary>
    public static NoiseSource FromSeed(long seed) => new([new Generator(unchecked((ulong)seed), CPU)]);

    /// <summary>One generator per sample, seeded with that sample's seed.</summary>
    public static NoiseSource PerSample(IReadOnlyList<long> seeds)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        return new(seeds.Select(s => new Generator(unchecked((ulong)s), CPU)).ToArray());
    }

    /// <summary>Standard normal noise of <paramref name="shape"/> (N, …) on <paramref name="device"/>.</summary>
    public Tensor Next(long[] shape, Device device)
    {
        using var scope = NewDisposeScope();
        Tensor result;
        if (_generators.Length == 1)
        {
            result = randn(shape, dtype: float32, generator: _generators[0]);
        }
        else
        {
            if (shape[0] != _generators.Length)
                throw new ArgumentException($"This noise source has {_generators.Length} per-sample seeds but a batch of {shape[0]} was asked for.", nameof(shape));
            var one = (long[])shape.Clone();
            one[0] = 1;
            result = cat(_generators.Select(g => randn(one, dtype: float32, generator: g)).ToArray(), 0);
        }
        return result.to(device).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var g in _generators) g.Dispose();
    }
}
