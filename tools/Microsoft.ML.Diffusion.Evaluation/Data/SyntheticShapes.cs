using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// A tiny built-in data set that needs no download: white discs and squares of random size and
/// position on a black background. Simple enough to learn in minutes on a CPU, structured enough
/// that generated samples are easy to tell from noise.
/// </summary>
public static class SyntheticShapes
{
    /// <summary>
    /// <paramref name="count"/> grey images of <paramref name="size"/>×<paramref name="size"/> as
    /// row-major pixels in [0, 1], generated deterministically from <paramref name="seed"/>.
    /// </summary>
    public static float[][] GeneratePixels(int count, int size = 16, int seed = 0) => GeneratePixels(count, size, seed, out _);

    /// <summary>Class names of <see cref="GeneratePixels(int, int, int, out int[])"/>'s labels.</summary>
    public static IReadOnlyList<string> ClassNames { get; } = ["disc", "square"];

    /// <summary>The same images, with each one's class: 0 for a disc, 1 for a square.</summary>
    public static float[][] GeneratePixels(int count, int size, int seed, out int[] labels)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be positive.");
        if (size < 8) throw new ArgumentOutOfRangeException(nameof(size), size, "Images must be at least 8×8.");
        var random = new Random(seed);
        var images = new float[count][];
        labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            var pixels = new float[size * size];
            bool disc = random.Next(2) == 0;
            labels[i] = disc ? 0 : 1;
            double radius = size * (0.15 + 0.15 * random.NextDouble());
            double cx = radius + random.NextDouble() * (size - 2 * radius);
            double cy = radius + random.NextDouble() * (size - 2 * radius);
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                    bool inside = disc ? dx * dx + dy * dy <= radius * radius : Math.Abs(dx) <= radius && Math.Abs(dy) <= radius;
                    pixels[y * size + x] = inside ? 1f : 0f;
                }
            }
            images[i] = pixels;
        }
        return images;
    }

    /// <summary>The same images as a tensor (N, 1, size, size) scaled to [−1, 1], ready for training.</summary>
    public static Tensor Generate(int count, int size = 16, int seed = 0) => Generate(count, size, seed, out _);

    /// <summary>The same images as a tensor, with each one's class (0 disc, 1 square).</summary>
    public static Tensor Generate(int count, int size, int seed, out int[] labels)
    {
        var pixels = GeneratePixels(count, size, seed, out labels);
        var flat = new float[count * size * size];
        for (int i = 0; i < count; i++)
            for (int j = 0; j < pixels[i].Length; j++)
                flat[i * size * size + j] = pixels[i][j] * 2f - 1f;
        return tensor(flat, [count, 1, size, size]);
    }
}
