using Microsoft.ML.Diffusion.Data;

namespace Microsoft.ML.Diffusion.Cli.Data;

/// <summary>Images from an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or not.</summary>
/// <param name="Count">Number of images.</param>
/// <param name="Height">Rows per image.</param>
/// <param name="Width">Columns per image.</param>
/// <param name="Pixels">Count × Height × Width bytes, row-major.</param>
public sealed record IdxImages(int Count, int Height, int Width, byte[] Pixels)
{
    /// <summary>Image <paramref name="index"/> as a span of Height × Width bytes.</summary>
    public ReadOnlySpan<byte> Image(int index) => Pixels.AsSpan(index * Height * Width, Height * Width);
}

/// <summary>
/// The CLI's view of IDX image files; the reading and writing is the library's <see cref="IdxFile"/>
/// (big-endian header, magic 0x00000803, gzip detected from the content).
/// </summary>
public static class IdxReader
{
    /// <summary>The magic number of an IDX file of unsigned-byte images (3 dimensions).</summary>
    public const int ImagesMagic = IdxFile.ImagesMagic;

    /// <summary>Reads at most <paramref name="maxImages"/> images from <paramref name="path"/>.</summary>
    public static IdxImages Read(string path, int? maxImages = null)
    {
        var (pixels, count, height, width) = IdxFile.ReadImages(path, maxImages);
        return new IdxImages(count, height, width, pixels);
    }

    /// <summary>Reads images from an uncompressed stream; <paramref name="name"/> names it in error messages.</summary>
    public static IdxImages Read(Stream stream, string name, int? maxImages = null)
    {
        var (pixels, count, height, width) = IdxFile.ReadImages(stream, name, maxImages);
        return new IdxImages(count, height, width, pixels);
    }

    /// <summary>Writes images as an uncompressed IDX file (or gzip-compressed when the path ends in .gz).</summary>
    public static void Write(string path, IdxImages images)
        => IdxFile.WriteImages(path, images.Pixels, images.Count, images.Height, images.Width);
}
