using Microsoft.ML.Data;
using SkiaSharp;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>mldiffusion edit (image-to-image and inpainting) and generate --interpolate on the trained shapes model.</summary>
public sealed class EditCommandTests(TrainedModelTests.TrainedModel trained) : IClassFixture<TrainedModelTests.TrainedModel>
{
    private string In(string name) => Path.Combine(trained.Folder, name);

    // A 24×24 picture (resized to the model's 16×16 by the command) and a mask, white on its right half.
    private (string Image, string Mask) Pictures()
    {
        string image = In("picture.png"), mask = In("mask.png");
        if (!File.Exists(mask))
        {
            Save(image, (x, y) => (byte)(x * 10), (x, y) => (byte)(y * 10), (x, y) => 128);
            Save(mask, (x, _) => x >= 12 ? (byte)255 : (byte)0, (x, _) => x >= 12 ? (byte)255 : (byte)0, (x, _) => x >= 12 ? (byte)255 : (byte)0);
        }
        return (image, mask);
    }

    private static void Save(string path, Func<int, int, byte> r, Func<int, int, byte> g, Func<int, int, byte> b)
    {
        var rgba = new byte[24 * 24 * 4];
        for (int y = 0; y < 24; y++)
            for (int x = 0; x < 24; x++)
            {
                int o = (y * 24 + x) * 4;
                (rgba[o], rgba[o + 1], rgba[o + 2], rgba[o + 3]) = (r(x, y), g(x, y), b(x, y), 255);
            }
        using var image = MLImage.CreateFromPixels(24, 24, MLPixelFormat.Rgba32, rgba);
        image.Save(path);
    }

    // The grey level of grid cell `cell` (one row of cells) at pixel (x, y) of the 16×16 image, magnified by `scale`.
    private static byte Cell(string grid, int cell, int x, int y, int scale)
    {
        using var bitmap = SKBitmap.Decode(grid);
        return bitmap.GetPixel(2 + cell * (16 * scale + 2) + x * scale, 2 + y * scale).Red;
    }

    [Fact]
    public void ImageToImageWritesTheInputAndTheEditsAndStrengthZeroKeepsTheInput()
    {
        var (image, _) = Pictures();
        string grid = In("edit.png"), again = In("edit-again.png"), kept = In("edit-kept.png");
        string[] args = ["edit", "--model", trained.Zip, "--image", image, "--strength", "0.5", "--count", "3", "--seed", "4", "--sampler", "ddim", "--steps", "10", "--scale", "2"];
        var outcome = Run([.. args, "--out", grid]);
        Succeeded(outcome);
        Assert.Contains("'picture.png' is resized to 16×16", outcome.Output);
        Assert.Contains("strength 0.5 (DDIM, 5 of 10 steps)", outcome.Output);
        Assert.Contains("Wrote the input and 3 edits (seeds 4–6)", outcome.Output);
        Assert.Equal(GridSize(4, columns: 8, size: 16, scale: 2), PngSize(grid));
        Succeeded(Run([.. args, "--out", again]));
        Assert.Equal(File.ReadAllBytes(grid), File.ReadAllBytes(again));   // seeded

        Succeeded(Run("edit", "--model", trained.Zip, "--image", image, "--strength", "0", "--count", "1", "--scale", "1", "--out", kept));
        for (int x = 0; x < 16; x += 3)
            Assert.InRange(Cell(kept, 1, x, 5, 1) - Cell(kept, 0, x, 5, 1), -1, 1);   // the edit is the input
    }

    [Fact]
    public void InpaintingKeepsTheBlackPartOfTheMask()
    {
        var (image, mask) = Pictures();
        string grid = In("inpaint.png");
        var outcome = Run("edit", "--model", trained.Zip, "--image", image, "--mask", mask, "--count", "2", "--steps", "20", "--jump-length", "5", "--resamplings", "2", "--scale", "1", "--out", grid);
        Succeeded(outcome);
        Assert.Contains("RePaint, 20 steps, jumps of 5, 2 samples each", outcome.Output);
        Assert.Equal(GridSize(4, columns: 8, size: 16, scale: 1), PngSize(grid));   // input, mask, 2 edits
        Assert.Equal(0, Cell(grid, 1, 2, 8, 1));      // the mask's kept half is black
        Assert.Equal(255, Cell(grid, 1, 14, 8, 1));   // its redrawn half white
        for (int edit = 2; edit < 4; edit++)
            for (int x = 0; x < 6; x++)
                Assert.InRange(Cell(grid, edit, x, 8, 1) - Cell(grid, 0, x, 8, 1), -1, 1);
    }

    [Fact]
    public void InterpolateWritesAStripBetweenTwoSeedsWhoseEndsAreTheSeedsImages()
    {
        string strip = In("strip.png"), ends = In("ends.png");
        var outcome = Run("generate", "--model", trained.Zip, "--interpolate", "3", "9", "--count", "5", "--sampler", "ddim", "--steps", "8", "--scale", "1", "--out", strip);
        Succeeded(outcome);
        Assert.Contains("5 images (from seed 3 to seed 9)", outcome.Output);
        Assert.Equal(GridSize(5, columns: 8, size: 16, scale: 1), PngSize(strip));
        Succeeded(Run("generate", "--model", trained.Zip, "--seed", "3", "--count", "1", "--sampler", "ddim", "--steps", "8", "--scale", "1", "--out", ends));
        for (int x = 0; x < 16; x += 5)
            Assert.InRange(Cell(strip, 0, x, 7, 1) - Cell(ends, 0, x, 7, 1), -1, 1);
    }

    [Fact]
    public void BadEditsAreNamed()
    {
        var (image, mask) = Pictures();
        string grid = In("bad.png");
        void Usage(Outcome o, string mention)
        {
            Assert.True(o.ExitCode == 2, o.ToString());
            Assert.Contains(mention, o.Output);
        }
        Usage(Run("edit", "--model", trained.Zip, "--image", In("missing.png"), "--out", grid), "Image file");
        Usage(Run("edit", "--model", trained.Zip, "--image", image, "--mask", In("nomask.png"), "--out", grid), "Mask file");
        Usage(Run("edit", "--model", trained.Zip, "--image", image, "--strength", "1.5", "--out", grid), "--strength must lie between 0 and 1");
        Usage(Run("edit", "--model", trained.Zip, "--image", image, "--mask", mask, "--strength", "0.5", "--out", grid), "--strength is for image-to-image");
        Usage(Run("edit", "--model", trained.Zip, "--image", image, "--mask", mask, "--sampler", "ddim", "--out", grid), "--sampler is for image-to-image");
        Usage(Run("edit", "--model", trained.Zip, "--image", image, "--resamplings", "0", "--out", grid), "--resamplings");
        Usage(Run("generate", "--model", trained.Zip, "--interpolate", "1", "2", "--count", "1", "--out", grid), "--count of at least 2");
        Usage(Run("generate", "--model", trained.Zip, "--interpolate", "1", "2", "--seed", "5", "--out", grid), "either --seed or --interpolate");

        File.WriteAllText(In("broken.png"), "not a png");
        var broken = Run("edit", "--model", trained.Zip, "--image", In("broken.png"), "--count", "1", "--out", grid);
        Assert.True(broken.ExitCode == 1, broken.ToString());
        Assert.Contains("broken.png", broken.Output);
        Assert.False(File.Exists(grid));
    }
}
