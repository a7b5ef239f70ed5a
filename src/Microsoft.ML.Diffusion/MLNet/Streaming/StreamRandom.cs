namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>
/// SplitMix64: a small seeded generator whose whole state is one 64-bit number, so a streamed data
/// order can be saved in a training state and continued exactly.
/// </summary>
internal sealed class StreamRandom(ulong state)
{
    public ulong State { get; private set; } = state;

    public ulong NextUInt64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>), without modulo bias (Lemire's method).</summary>
    public int Next(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be positive.");
        ulong threshold = (ulong)(-(long)bound) % (ulong)bound;
        while (true)
        {
            ulong product = (ulong)(uint)(NextUInt64() >> 32) * (ulong)bound;
            if ((uint)product >= threshold) return (int)(product >> 32);
        }
    }
}
