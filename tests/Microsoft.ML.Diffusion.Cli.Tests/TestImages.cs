using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.SampleData;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>Small image sets written to disk: PNG folders and IDX files of the built-in shapes.</summary>
public static class TestImages
{
    /// <summary>20×20 RGB shape PNGs.</summary>
    public static void WriteShapes(string folder, int count)
    {
        Directory.CreateDirectory(folder);
        var shapes = SyntheticShapes.GeneratePixels(count, 20, seed: 3);
        for (int i = 0; i < count; i++)
        {
            var rgba = new byte[20 * 20 * 4];
            for (int p = 0; p < 400; p++)
            {
                byte v = (byte)(shapes[i][p] * 255);
                rgba[p * 4] = v; rgba[p * 4 + 1] = (byte)(v / 2); rgba[p * 4 + 2] = (byte)(255 - v); rgba[p * 4 + 3] = 255;
            }
            using var image = MLImage.CreateFromPixels(20, 20, MLPixelFormat.Rgba32, rgba);
            image.Save(Path.Combine(folder, $"shape{i:D3}.png"));
        }
    }

    /// <summary>An IDX file of <paramref name="count"/> grey size×size shapes (gzip-compressed when the path ends in .gz).</summary>
    public static void WriteIdx(string path, int count, int size)
    {
        var shapes = SyntheticShapes.GeneratePixels(count, size, seed: 4);
        IdxFile.WriteImages(path, shapes.SelectMany(p => p.Select(v => (byte)(v * 255))).ToArray(), count, size, size);
    }
}
