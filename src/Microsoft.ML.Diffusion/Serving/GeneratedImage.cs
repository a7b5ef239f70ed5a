namespace Microsoft.ML.Diffusion.Serving;

/// <summary>A generated image: its pixels, channel by channel, in [−1, 1].</summary>
public sealed class GeneratedImage
{
    internal GeneratedImage(long seed, int channels, int height, int width, float[] pixels)
        => (Seed, Channels, Height, Width, Pixels) = (seed, channels, height, width, pixels);

    /// <summary>The request's seed.</summary>
    public long Seed { get; }

    /// <summary>Channels (1 grey, 3 RGB).</summary>
    public int Channels { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Channels × Height × Width values in [−1, 1], channel-major (C, H, W).</summary>
    public float[] Pixels { get; }

    /// <summary>
    /// The pixels as 8-bit values, interleaved (H, W, C): (v + 1) · 127.5, rounded and clamped to [0, 255], ready for an
    /// image encoder.
    /// </summary>
    public byte[] ToBytes()
    {
        int plane = Height * Width;
        var bytes = new byte[Pixels.Length];
        for (int c = 0; c < Channels; c++)
            for (int p = 0; p < plane; p++)
                bytes[p * Channels + c] = (byte)Math.Clamp(Math.Round((Pixels[c * plane + p] + 1.0) * 127.5), 0, 255);
        return bytes;
    }
}
