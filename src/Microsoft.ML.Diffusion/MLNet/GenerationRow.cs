namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// What a generation stage reads from one input row: its seed, its condition (conditional models), and for editing stages
/// its image as planar floats in [−1, 1] and its inpainting mask in [0, 1].
/// </summary>
internal sealed record GenerationRow(long Seed, object? Condition, float[]? Image, float[]? Mask, string? NegativePrompt = null)
{
    /// <summary>Whether <paramref name="other"/> asks for the same output (a prediction engine's cache key).</summary>
    public bool SameInputs(GenerationRow? other)
        => other is not null && other.Seed == Seed && SameValues(other.Condition, Condition)
           && SameValues(other.Image, Image) && SameValues(other.Mask, Mask) && other.NegativePrompt == NegativePrompt;

    private static bool SameValues(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (long[] x, long[] y) => x.AsSpan().SequenceEqual(y),
        (float[] x, float[] y) => x.AsSpan().SequenceEqual(y),
        _ => Equals(a, b),
    };
}
