using Microsoft.ML.Diffusion.Imaging;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// Images as rows of planar C×H×W pixels in [0, 255] — what ExtractPixels and the generation stage's pixel
/// output give — turned into the library's (N, C, H, W) tensors in [−1, 1] and PNG grids.
/// </summary>
public static class PixelRows
{
    /// <summary>The rows as a tensor (N, <paramref name="channels"/>, <paramref name="height"/>, <paramref name="width"/>) in [−1, 1].</summary>
    public static Tensor ToTensor(IReadOnlyList<float[]> rows, int channels, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("There are no rows.", nameof(rows));
        int length = channels * height * width;
        var flat = new float[rows.Count * length];
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Length != length)
                throw new ArgumentException($"Row {i} has {rows[i].Length} values; {channels}×{height}×{width} images need {length}.", nameof(rows));
            for (int j = 0; j < length; j++)
                flat[i * length + j] = rows[i][j] / 127.5f - 1f;
        }
        return tensor(flat, [rows.Count, channels, height, width]);
    }

    /// <summary>Saves the rows as a PNG grid through <see cref="ImageGrid.SavePng"/>.</summary>
    public static void SaveGrid(IReadOnlyList<float[]> rows, int channels, int height, int width, string path, int columns = 8, int scale = 2)
    {
        using var images = ToTensor(rows, channels, height, width);
        ImageGrid.SavePng(images, path, columns, scale);
    }
}
