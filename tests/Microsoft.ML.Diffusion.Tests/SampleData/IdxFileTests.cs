using Microsoft.ML.Diffusion.SampleData;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.SampleData;

public sealed class IdxFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-idx-").FullName;

    private string In(string name) => Path.Combine(_dir, name);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Pixels(int count, int height, int width)
    {
        var pixels = new byte[count * height * width];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 37 + 11);
        return pixels;
    }

    [Theory]
    [InlineData("images-idx3-ubyte", "labels-idx1-ubyte")]
    [InlineData("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")]
    public void ImagesAndLabelsRoundTripPlainAndGzipped(string imagesName, string labelsName)
    {
        var pixels = Pixels(5, 7, 6);
        byte[] labels = [3, 1, 4, 1, 5];
        IdxFile.WriteImages(In(imagesName), pixels, 5, 7, 6);
        IdxFile.WriteLabels(In(labelsName), labels);

        bool gzipped = imagesName.EndsWith(".gz");
        var head = File.ReadAllBytes(In(imagesName))[..2];
        Assert.Equal(gzipped, head[0] == 0x1F && head[1] == 0x8B);

        var (readPixels, count, height, width) = IdxFile.ReadImages(In(imagesName));
        Assert.Equal((5, 7, 6), (count, height, width));
        Assert.Equal(pixels, readPixels);
        Assert.Equal(labels, IdxFile.ReadLabels(In(labelsName)));

        var (firstTwo, two, _, _) = IdxFile.ReadImages(In(imagesName), maxImages: 2);
        Assert.Equal(2, two);
        Assert.Equal(pixels[..(2 * 7 * 6)], firstTwo);
        Assert.Equal(labels[..3], IdxFile.ReadLabels(In(labelsName), maxLabels: 3));

        var both = IdxFile.ReadLabeledImages(In(imagesName), In(labelsName));
        Assert.Equal((5, 7, 6), (both.Count, both.Height, both.Width));
        Assert.Equal(labels, both.Labels);
    }

    [Fact]
    public void GzipIsDetectedByContentNotByName()
    {
        var pixels = Pixels(3, 4, 4);
        IdxFile.WriteImages(In("gz.gz"), pixels, 3, 4, 4);
        File.Move(In("gz.gz"), In("no-extension"));
        Assert.Equal(pixels, IdxFile.ReadImages(In("no-extension")).Pixels);
    }

    [Fact]
    public void TheBigEndianHeaderIsWhatTheFormatSays()
    {
        IdxFile.WriteImages(In("a.idx"), Pixels(2, 3, 5), 2, 3, 5);
        Assert.Equal(new byte[] { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5 }, File.ReadAllBytes(In("a.idx"))[..16]);
        IdxFile.WriteLabels(In("l.idx"), [9, 8]);
        Assert.Equal(new byte[] { 0, 0, 8, 1, 0, 0, 0, 2, 9, 8 }, File.ReadAllBytes(In("l.idx")));
    }

    [Fact]
    public void AWrongMagicNumberIsReportedWithTheFileName()
    {
        IdxFile.WriteLabels(In("labels.idx"), [1, 2, 3]);
        IdxFile.WriteImages(In("images.idx"), Pixels(1, 4, 4), 1, 4, 4);
        File.WriteAllBytes(In("foreign.bin"), "PK\u0003\u0004 not an idx file"u8.ToArray());

        var e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(In("labels.idx")));
        Assert.Contains(In("labels.idx"), e.Message);
        Assert.Contains("0x00000801", e.Message);
        Assert.Contains("labels?", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadLabels(In("images.idx")));
        Assert.Contains(In("images.idx"), e.Message);
        Assert.Contains("0x00000803", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(In("foreign.bin")));
        Assert.Contains(In("foreign.bin"), e.Message);
        Assert.Contains("not an IDX file", e.Message);
        Assert.Equal(In("foreign.bin"), e.Data[IdxFile.PathKey]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedImagesAndLabelsAreReportedAsSuch(bool gzipped)
    {
        IdxFile.WriteImages(In("full.idx"), Pixels(4, 10, 10), 4, 10, 10);
        IdxFile.WriteLabels(In("full-labels.idx"), [0, 1, 2, 3, 4, 5]);
        WriteMaybeGzipped(In("short.idx"), File.ReadAllBytes(In("full.idx"))[..(16 + 250)], gzipped);
        WriteMaybeGzipped(In("short-labels.idx"), File.ReadAllBytes(In("full-labels.idx"))[..(8 + 4)], gzipped);
        WriteMaybeGzipped(In("header.idx"), File.ReadAllBytes(In("full.idx"))[..10], gzipped);

        var e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(In("short.idx")));
        Assert.Contains(In("short.idx"), e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("after 2 of them", e.Message);
        // Reading only the images that are there works.
        Assert.Equal(2, IdxFile.ReadImages(In("short.idx"), maxImages: 2).Count);

        e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadLabels(In("short-labels.idx")));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("6 labels but ends after 4", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(In("header.idx")));
        Assert.Contains("header", e.Message);
    }

    [Fact]
    public void CorruptGzipDataIsReportedWithTheFileName()
    {
        IdxFile.WriteImages(In("good.gz"), Pixels(20, 10, 10), 20, 10, 10);
        var bytes = File.ReadAllBytes(In("good.gz"));
        for (int i = 10; i < bytes.Length - 8; i++) bytes[i] ^= 0x5A;
        File.WriteAllBytes(In("bad.gz"), bytes);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(In("bad.gz")));
        Assert.Contains(In("bad.gz"), e.Message);
    }

    [Fact]
    public void MismatchedImageAndLabelCountsAreRejected()
    {
        IdxFile.WriteImages(In("images.idx"), Pixels(3, 4, 4), 3, 4, 4);
        IdxFile.WriteLabels(In("labels.idx"), [1, 2]);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.ReadLabeledImages(In("images.idx"), In("labels.idx")));
        Assert.Contains(In("labels.idx"), e.Message);
        Assert.Contains(In("images.idx"), e.Message);
        Assert.Contains("2 labels", e.Message);
        Assert.Contains("3 images", e.Message);
    }

    [Fact]
    public void AMissingFileIsNamed()
    {
        var e = Assert.Throws<FileNotFoundException>(() => IdxFile.ReadImages(In("absent.idx")));
        Assert.Contains(In("absent.idx"), e.Message);
    }

    private static void WriteMaybeGzipped(string path, byte[] bytes, bool gzipped)
    {
        if (!gzipped) { File.WriteAllBytes(path, bytes); return; }
        using var file = File.Create(path);
        using var gz = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionLevel.Fastest);
        gz.Write(bytes);
    }
}
