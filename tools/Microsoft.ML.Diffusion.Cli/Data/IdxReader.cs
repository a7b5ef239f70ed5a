using System.Buffers.Binary;
using System.IO.Compression;

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
/// Reads IDX image files: a big-endian header with magic 0x00000803 (unsigned bytes, 3 dimensions),
/// then the dimensions N, rows, columns as big-endian 32-bit integers, then N·rows·columns bytes.
/// Gzip compression is detected from the content (0x1F 0x8B), not the file name.
/// </summary>
public static class IdxReader
{
    /// <summary>The magic number of an IDX file of unsigned-byte images (3 dimensions).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Reads at most <paramref name="maxImages"/> images from <paramref name="path"/>.</summary>
    public static IdxImages Read(string path, int? maxImages = null)
    {
        using var file = File.OpenRead(path);
        int b0 = file.ReadByte(), b1 = file.ReadByte();
        file.Position = 0;
        bool gzip = b0 == 0x1F && b1 == 0x8B;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        try
        {
            return Read(stream, path, maxImages);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"IDX file '{path}' is not valid gzip data: {e.Message}", e);
        }
    }

    /// <summary>Reads images from a stream; <paramref name="name"/> names it in error messages.</summary>
    public static IdxImages Read(Stream stream, string name, int? maxImages = null)
    {
        Span<byte> header = stackalloc byte[16];
        if (ReadFully(stream, header[..4]) < 4)
            throw new InvalidDataException($"IDX file '{name}' is too short to hold a header.");
        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic != ImagesMagic)
        {
            string what = (magic & 0xFFFF0000) != 0 ? "is not an IDX file"
                : (magic & 0xFF) == 1 ? "holds a 1-dimensional array (labels?), not images"
                : $"holds type 0x{(magic >> 8) & 0xFF:X2} with {magic & 0xFF} dimensions, not unsigned-byte images";
            throw new InvalidDataException($"IDX file '{name}' {what}: its magic number is 0x{magic:X8}, images have 0x{ImagesMagic:X8}.");
        }
        if (ReadFully(stream, header[4..16]) < 12)
            throw new InvalidDataException($"IDX file '{name}' ends inside its header.");
        int count = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        int rows = BinaryPrimitives.ReadInt32BigEndian(header[8..]);
        int cols = BinaryPrimitives.ReadInt32BigEndian(header[12..]);
        if (count < 1 || rows < 1 || cols < 1 || (long)rows * cols > 1 << 24)
            throw new InvalidDataException($"IDX file '{name}' declares {count} images of {rows}×{cols}, which is not a usable image set.");
        int take = maxImages is int m ? Math.Min(m, count) : count;
        long length = (long)take * rows * cols;
        if (length > Array.MaxLength)
            throw new InvalidDataException($"IDX file '{name}' holds {take} images of {rows}×{cols}, too many to hold in memory; limit them with --max-images.");
        var pixels = new byte[length];
        int read = ReadFully(stream, pixels);
        if (read < length)
            throw new InvalidDataException($"IDX file '{name}' is truncated: it declares {count} images of {rows}×{cols} but ends after {read / (rows * cols)} of them.");
        return new IdxImages(take, rows, cols, pixels);
    }

    /// <summary>Writes images as an uncompressed IDX file (or gzip-compressed when the path ends in .gz).</summary>
    public static void Write(string path, IdxImages images)
    {
        using var file = File.Create(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionLevel.Fastest) : file;
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, ImagesMagic);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], images.Count);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], images.Height);
        BinaryPrimitives.WriteInt32BigEndian(header[12..], images.Width);
        stream.Write(header);
        stream.Write(images.Pixels);
    }

    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
