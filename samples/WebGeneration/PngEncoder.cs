using Microsoft.ML.Diffusion.Serving;
using SkiaSharp;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>Encodes a generated image as PNG: grey images as 8-bit grey, colour images as opaque RGBA.</summary>
public static class PngEncoder
{
    public static byte[] Encode(GeneratedImage image)
    {
        byte[] bytes = image.ToBytes();
        int plane = image.Height * image.Width;
        SKImageInfo info;
        byte[] pixels;
        if (image.Channels == 1)
        {
            info = new SKImageInfo(image.Width, image.Height, SKColorType.Gray8, SKAlphaType.Opaque);
            pixels = bytes;
        }
        else
        {
            // Skia has no packed 24-bit format: add an opaque alpha byte to each pixel.
            info = new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            pixels = new byte[plane * 4];
            for (int p = 0; p < plane; p++)
            {
                for (int c = 0; c < 3; c++) pixels[p * 4 + c] = bytes[p * image.Channels + Math.Min(c, image.Channels - 1)];
                pixels[p * 4 + 3] = image.Channels == 4 ? bytes[p * 4 + 3] : (byte)255;
            }
        }
        using var data = SKData.CreateCopy(pixels);
        using var skImage = SKImage.FromPixels(info, data, info.RowBytes)
            ?? throw new InvalidOperationException($"Skia cannot hold a {image.Width}×{image.Height} image of {image.Channels} channels.");
        using var png = skImage.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
