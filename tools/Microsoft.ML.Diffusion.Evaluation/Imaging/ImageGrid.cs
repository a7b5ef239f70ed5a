using SkiaSharp;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Storage;

namespace Microsoft.ML.Diffusion.Imaging;

/// <summary>Writes a batch of generated images as one PNG grid, the usual way to look at samples.</summary>
public static class ImageGrid
{
    /// <summary>
    /// Saves images (N, C, H, W) with values in [−1, 1] (C = 1, 3 or 4) as a PNG grid of
    /// <paramref name="columns"/> columns, each image scaled up by <paramref name="scale"/>.
    /// </summary>
    public static void SavePng(Tensor images, string path, int columns = 8, int scale = 2, int padding = 2)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (images.dim() != 4) throw new ArgumentException($"Images must be (N, C, H, W), not [{string.Join(", ", images.shape)}].", nameof(images));
        int n = (int)images.shape[0], c = (int)images.shape[1], h = (int)images.shape[2], w = (int)images.shape[3];
        if (c is not (1 or 3 or 4)) throw new ArgumentException($"Images must have 1, 3 or 4 channels, not {c}.", nameof(images));
        if (columns < 1 || scale < 1 || padding < 0) throw new ArgumentOutOfRangeException(nameof(columns), "columns and scale must be positive, padding non-negative.");

        byte[] bytes;
        using (var scope = NewDisposeScope())
        {
            var u8 = ((images.detach().to(CPU).to_type(float32).clamp(-1, 1) + 1) * 127.5).round().to_type(ScalarType.Byte);
            bytes = u8.permute(0, 2, 3, 1).contiguous().data<byte>().ToArray();   // (N, H, W, C)
        }

        columns = Math.Min(columns, n);
        int rows = (n + columns - 1) / columns;
        int cellW = w * scale + padding, cellH = h * scale + padding;
        using var bitmap = new SKBitmap(columns * cellW + padding, rows * cellH + padding, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        bitmap.Erase(new SKColor(255, 255, 255, 255));
        for (int i = 0; i < n; i++)
        {
            int ox = padding + i % columns * cellW, oy = padding + i / columns * cellH;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int o = ((i * h + y) * w + x) * c;
                    var color = c == 1 ? new SKColor(bytes[o], bytes[o], bytes[o])
                        : new SKColor(bytes[o], bytes[o + 1], bytes[o + 2], c == 4 ? bytes[o + 3] : (byte)255);
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale; dx++)
                            bitmap.SetPixel(ox + x * scale + dx, oy + y * scale + dy, color);
                }
        }
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(path, data.SaveTo);
    }
}
