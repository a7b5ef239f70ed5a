using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Conversions between ML.NET's image representations and the model's planar (C, H, W) floats in
/// [−1, 1]. Transparent pixels are composited over white when the model has no alpha channel.
/// </summary>
internal static class ImagePixels
{
    /// <summary>Writes an image's pixels as (C, H, W) floats in [−1, 1] into <paramref name="destination"/>.</summary>
    public static void FromImage(MLImage image, int channels, Span<float> destination)
    {
        int w = image.Width, h = image.Height, plane = w * h;
        var pixels = image.Pixels;
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        for (int i = 0; i < plane; i++)
        {
            int o = i * 4;
            float r = pixels[bgra ? o + 2 : o], g = pixels[o + 1], b = pixels[bgra ? o : o + 2], a = pixels[o + 3];
            if (channels != 4 && a < 255)
            {
                float alpha = a / 255f;   // over white
                r = r * alpha + 255f * (1 - alpha);
                g = g * alpha + 255f * (1 - alpha);
                b = b * alpha + 255f * (1 - alpha);
            }
            if (channels == 1)
            {
                destination[i] = ToModel(0.299f * r + 0.587f * g + 0.114f * b);   // ITU-R BT.601 luma
            }
            else
            {
                destination[i] = ToModel(r);
                destination[plane + i] = ToModel(g);
                destination[2 * plane + i] = ToModel(b);
                if (channels == 4) destination[3 * plane + i] = ToModel(a);
            }
        }
    }

    /// <summary>Maps vector pixels of a given range to [−1, 1] in place.</summary>
    public static void FromRange(Span<float> values, PixelRange range)
    {
        switch (range)
        {
            case PixelRange.Bytes: for (int i = 0; i < values.Length; i++) values[i] = values[i] / 127.5f - 1f; break;
            case PixelRange.Unit: for (int i = 0; i < values.Length; i++) values[i] = values[i] * 2f - 1f; break;
            case PixelRange.Symmetric: break;
            default: throw new ArgumentOutOfRangeException(nameof(range), range, "Unknown pixel range.");
        }
    }

    /// <summary>A value in [−1, 1] mapped back to a range (for messages).</summary>
    public static float ToRange(float value, PixelRange range) => range switch
    {
        PixelRange.Bytes => (value + 1f) * 127.5f,
        PixelRange.Unit => (value + 1f) / 2f,
        _ => value,
    };

    /// <summary>An RGBA image from (C, H, W) floats in [−1, 1]; grey images become R = G = B.</summary>
    public static MLImage ToImage(ReadOnlySpan<float> planar, int channels, int height, int width)
    {
        int plane = height * width;
        var rgba = new byte[plane * 4];
        for (int i = 0; i < plane; i++)
        {
            byte r = ToByte(planar[i]);
            byte g = channels >= 3 ? ToByte(planar[plane + i]) : r;
            byte b = channels >= 3 ? ToByte(planar[2 * plane + i]) : r;
            byte a = channels == 4 ? ToByte(planar[3 * plane + i]) : (byte)255;
            rgba[i * 4] = r; rgba[i * 4 + 1] = g; rgba[i * 4 + 2] = b; rgba[i * 4 + 3] = a;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>(C, H, W) floats in [−1, 1] mapped to [0, 255] (ExtractPixels' default range).</summary>
    public static float[] ToBytesRange(ReadOnlySpan<float> planar)
    {
        var result = new float[planar.Length];
        for (int i = 0; i < planar.Length; i++) result[i] = (Math.Clamp(planar[i], -1f, 1f) + 1f) * 127.5f;
        return result;
    }

    private static float ToModel(float byteValue) => byteValue / 127.5f - 1f;

    private static byte ToByte(float v) => (byte)Math.Round((Math.Clamp(v, -1f, 1f) + 1f) * 127.5f);
}
