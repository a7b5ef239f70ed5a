using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Diffusion.Storage;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// Reads and writes IDX files, the format of MNIST and Fashion-MNIST: a big-endian header with a magic
/// number (0x00000803 for unsigned-byte images N×H×W, 0x00000801 for unsigned-byte labels N), then each
/// dimension as a big-endian 32-bit integer, then the bytes. Gzip compression is detected from the
/// content (0x1F 0x8B), not from the file name.
/// </summary>
public static class IdxFile
{
    /// <summary>The magic number of an IDX file of unsigned-byte images (3 dimensions).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>The magic number of an IDX file of unsigned-byte labels (1 dimension).</summary>
    public const int LabelsMagic = 0x00000801;

    /// <summary>
    /// Reads at most <paramref name="maxImages"/> images (all when null) from <paramref name="path"/>:
    /// Count × Height × Width bytes, row-major.
    /// </summary>
    public static (byte[] Pixels, int Count, int Height, int Width) ReadImages(string path, int? maxImages = null)
        => WithFile(path, stream => ReadImages(stream, path, maxImages));

    /// <summary>Reads images from an uncompressed IDX stream; <paramref name="name"/> names it in error messages.</summary>
    public static (byte[] Pixels, int Count, int Height, int Width) ReadImages(Stream stream, string name, int? maxImages = null)
    {
        Span<byte> header = stackalloc byte[16];
        ReadMagic(stream, name, header[..4], ImagesMagic, "images");
        if (ReadFully(stream, header[4..16]) < 12)
            throw Fail(name, $"IDX file '{name}' ends inside its header.");
        int count = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        int rows = BinaryPrimitives.ReadInt32BigEndian(header[8..]);
        int cols = BinaryPrimitives.ReadInt32BigEndian(header[12..]);
        if (count < 1 || rows < 1 || cols < 1 || (long)rows * cols > 1 << 24)
            throw Fail(name, $"IDX file '{name}' declares {count} images of {rows}×{cols}, which is not a usable image set.");
        if (maxImages is < 0) throw new ArgumentOutOfRangeException(nameof(maxImages), maxImages, "maxImages must not be negative.");
        int take = maxImages is int m ? Math.Min(m, count) : count;
        long length = (long)take * rows * cols;
        if (length > Array.MaxLength)
            throw Fail(name, $"IDX file '{name}' holds {take} images of {rows}×{cols}, too many to hold in memory; read fewer of them.");
        var pixels = new byte[length];
        int read = ReadFully(stream, pixels);
        if (read < length)
            throw Fail(name, $"IDX file '{name}' is truncated: it declares {count} images of {rows}×{cols} but ends after {read / (rows * cols)} of them.");
        return (pixels, take, rows, cols);
    }

    /// <summary>Reads at most <paramref name="maxLabels"/> labels (all when null) from <paramref name="path"/>.</summary>
    public static byte[] ReadLabels(string path, int? maxLabels = null)
        => WithFile(path, stream => ReadLabels(stream, path, maxLabels));

    /// <summary>Reads labels from an uncompressed IDX stream; <paramref name="name"/> names it in error messages.</summary>
    public static byte[] ReadLabels(Stream stream, string name, int? maxLabels = null)
    {
        Span<byte> header = stackalloc byte[8];
        ReadMagic(stream, name, header[..4], LabelsMagic, "labels");
        if (ReadFully(stream, header[4..8]) < 4)
            throw Fail(name, $"IDX file '{name}' ends inside its header.");
        int count = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        if (count < 0)
            throw Fail(name, $"IDX file '{name}' declares {count} labels.");
        if (maxLabels is < 0) throw new ArgumentOutOfRangeException(nameof(maxLabels), maxLabels, "maxLabels must not be negative.");
        int take = maxLabels is int m ? Math.Min(m, count) : count;
        var labels = new byte[take];
        int read = ReadFully(stream, labels);
        if (read < take)
            throw Fail(name, $"IDX file '{name}' is truncated: it declares {count} labels but ends after {read} of them.");
        return labels;
    }

    /// <summary>
    /// Reads an images file and its labels file, checking that they hold the same number of items.
    /// </summary>
    public static (byte[] Pixels, byte[] Labels, int Count, int Height, int Width) ReadLabeledImages(string imagesPath, string labelsPath, int? maxItems = null)
    {
        var (pixels, count, height, width) = ReadImages(imagesPath, maxItems);
        var labels = ReadLabels(labelsPath, maxItems);
        if (labels.Length != count)
            throw Fail(labelsPath, $"IDX labels file '{labelsPath}' holds {labels.Length} labels but images file '{imagesPath}' holds {count} images; the counts must match.");
        return (pixels, labels, count, height, width);
    }

    /// <summary>
    /// Writes <paramref name="count"/> images of <paramref name="height"/>×<paramref name="width"/> as an
    /// IDX file, gzip-compressed when the path ends in .gz.
    /// </summary>
    public static void WriteImages(string path, ReadOnlySpan<byte> pixels, int count, int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        if (pixels.Length != (long)count * height * width)
            throw new ArgumentException($"{count} images of {height}×{width} need {(long)count * height * width} bytes, not {pixels.Length}.", nameof(pixels));
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, ImagesMagic);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], count);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], height);
        BinaryPrimitives.WriteInt32BigEndian(header[12..], width);
        Write(path, header, pixels);
    }

    /// <summary>Writes labels as an IDX file, gzip-compressed when the path ends in .gz.</summary>
    public static void WriteLabels(string path, ReadOnlySpan<byte> labels)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, LabelsMagic);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], labels.Length);
        Write(path, header, labels);
    }

    private static void Write(string path, ReadOnlySpan<byte> header, ReadOnlySpan<byte> body)
    {
        byte[] bytes = [.. header, .. body];
        AtomicFile.Write(path, file =>
        {
            if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) { file.Write(bytes); return; }
            using var gzip = new GZipStream(file, CompressionLevel.Fastest, leaveOpen: true);
            gzip.Write(bytes);
        });
    }

    private static T WithFile<T>(string path, Func<Stream, T> read)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file '{path}' does not exist.", path);
        using var file = File.OpenRead(path);
        int b0 = file.ReadByte(), b1 = file.ReadByte();
        file.Position = 0;
        bool gzip = b0 == 0x1F && b1 == 0x8B;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        try
        {
            return read(stream);
        }
        catch (InvalidDataException e) when (!e.Data.Contains(PathKey))
        {
            throw Fail(path, $"IDX file '{path}' is not valid gzip data: {e.Message}", e);
        }
    }

    /// <summary>
    /// The key of <see cref="Exception.Data"/> under which the <see cref="InvalidDataException"/>s thrown
    /// here record the file (or stream name) that could not be read.
    /// </summary>
    public const string PathKey = "IdxFile.Path";

    /// <summary>An <see cref="InvalidDataException"/> about <paramref name="path"/>, which it records under <see cref="PathKey"/>.</summary>
    internal static InvalidDataException Fail(string path, string message, Exception? inner = null)
    {
        var e = new InvalidDataException(message, inner);
        e.Data[PathKey] = path;
        return e;
    }

    private static void ReadMagic(Stream stream, string name, Span<byte> buffer, int expected, string kind)
    {
        if (ReadFully(stream, buffer) < 4)
            throw Fail(name, $"IDX file '{name}' is too short to hold a header.");
        int magic = BinaryPrimitives.ReadInt32BigEndian(buffer);
        if (magic == expected) return;
        string what = (magic & unchecked((int)0xFFFF0000)) != 0 ? "is not an IDX file"
            : magic == LabelsMagic ? "holds a 1-dimensional array of bytes (labels?)"
            : magic == ImagesMagic ? "holds a 3-dimensional array of bytes (images?)"
            : $"holds type 0x{(magic >> 8) & 0xFF:X2} with {magic & 0xFF} dimensions";
        throw Fail(name, $"IDX file '{name}' {what}, not unsigned-byte {kind}: its magic number is 0x{magic:X8}, {kind} have 0x{expected:X8}.");
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
