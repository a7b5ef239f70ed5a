using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.SampleData;
using SkiaSharp;

namespace Microsoft.ML.Diffusion.Cli.Data;

/// <summary>A row of planar C×H×W pixels, the float-vector form TrainDiffusion reads.</summary>
public sealed class PixelRow
{
    public float[] Pixels { get; set; } = [];
}

/// <summary>A row naming an image file relative to the image folder, for LoadImages.</summary>
public sealed class ImageFileRow
{
    public string Path { get; set; } = "";
}

/// <summary>The three kinds of training/reference data the CLI accepts, and their checks.</summary>
internal static class ImageSources
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>Number of built-in shape images (data seed 0) used by <c>--shapes</c> unless told otherwise.</summary>
    public const int DefaultShapeCount = 512;

    /// <summary>Image files (png, jpg) under <paramref name="folder"/>, relative to it, sorted; usage errors when there are none.</summary>
    public static string[] ListImageFiles(string folder, int? maxImages)
    {
        if (!Directory.Exists(folder))
            throw new UsageException($"Image folder '{folder}' does not exist.");
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => Extensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant()))
            .Select(f => System.IO.Path.GetRelativePath(folder, f))
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0)
            throw new UsageException($"Image folder '{folder}' contains no .png or .jpg images.");
        return maxImages is int m ? files.Take(m).ToArray() : files;
    }

    /// <summary>Decodes each file's header so an unreadable image fails before training starts, naming the file.</summary>
    public static void CheckReadable(string folder, IEnumerable<string> relativePaths)
    {
        foreach (string relative in relativePaths)
        {
            string path = System.IO.Path.Combine(folder, relative);
            using var codec = SKCodec.Create(path, out var result);
            if (codec is null || codec.Info.Width < 1 || codec.Info.Height < 1)
                throw new CliRuntimeException($"Image '{path}' cannot be read ({result}); it is not a valid PNG or JPEG file.");
        }
    }

    /// <summary>The built-in shapes as rows of 1×size×size pixels in [0, 1] (PixelRange.Unit).</summary>
    public static float[][] Shapes(int count, int size) => SyntheticShapes.GeneratePixels(count, size, seed: 0);

    /// <summary>IDX images resized (bilinear) to size×size, pixels in [0, 255] (PixelRange.Bytes).</summary>
    public static float[][] Idx(string path, int size, int? maxImages)
    {
        if (!File.Exists(path)) throw new UsageException($"IDX file '{path}' does not exist.");
        byte[] pixels;
        int count, height, width;
        try
        {
            (pixels, count, height, width) = IdxFile.ReadImages(path, maxImages);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new CliRuntimeException(e.Message, e);
        }
        int area = height * width;
        var rows = new float[count][];
        for (int i = 0; i < count; i++)
            rows[i] = Resize(pixels.AsSpan(i * area, area), height, width, size);
        return rows;
    }

    /// <summary>The native size of the images in an IDX file when they are square (for a default --size).</summary>
    public static int? IdxSquareSize(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"IDX file '{path}' does not exist.");
        try
        {
            var (_, _, height, width) = IdxFile.ReadImages(path, maxImages: 1);
            return height == width ? height : null;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new CliRuntimeException(e.Message, e);
        }
    }

    /// <summary>Bilinear resampling of a grey image (half-pixel centres), values kept in [0, 255].</summary>
    public static float[] Resize(ReadOnlySpan<byte> source, int height, int width, int size)
    {
        var result = new float[size * size];
        if (height == size && width == size)
        {
            for (int i = 0; i < result.Length; i++) result[i] = source[i];
            return result;
        }
        double sy = (double)height / size, sx = (double)width / size;
        for (int y = 0; y < size; y++)
        {
            double fy = Math.Clamp((y + 0.5) * sy - 0.5, 0, height - 1);
            int y0 = (int)fy, y1 = Math.Min(y0 + 1, height - 1);
            double wy = fy - y0;
            for (int x = 0; x < size; x++)
            {
                double fx = Math.Clamp((x + 0.5) * sx - 0.5, 0, width - 1);
                int x0 = (int)fx, x1 = Math.Min(x0 + 1, width - 1);
                double wx = fx - x0;
                double top = source[y0 * width + x0] * (1 - wx) + source[y0 * width + x1] * wx;
                double bottom = source[y1 * width + x0] * (1 - wx) + source[y1 * width + x1] * wx;
                result[y * size + x] = (float)(top * (1 - wy) + bottom * wy);
            }
        }
        return result;
    }

    /// <summary>Rows of C×size×size pixels as a data view whose column type records (C, H, W).</summary>
    public static IDataView ToDataView(MLContext ml, IEnumerable<float[]> rows, int channels, int size)
    {
        var schema = SchemaDefinition.Create(typeof(PixelRow));
        schema[nameof(PixelRow.Pixels)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, channels, size, size);
        return ml.Data.LoadFromEnumerable(rows.Select(p => new PixelRow { Pixels = p }), schema);
    }
}
