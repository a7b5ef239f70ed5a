using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>
/// Inpainting has to make the redrawn part fit the kept one: on a model trained on the built-in shapes, the right half of
/// squares that straddle the image's middle is masked, and RePaint must complete the square at least twice as often as
/// fills that know nothing of squares.
/// </summary>
public sealed class ShapeCompletionTests(ITestOutputHelper output)
{
    private const int Size = 16, Half = Size / 2;
    private const int Count = 48, TrainingSteps = 400;

    [Fact]
    public void RePaintCompletesHalfMaskedSquaresFarMoreOftenThanModelFreeFills()
    {
        // The built-in shapes' squares: at 16×16 a two-pixel-wide half of a small square could as well be half a disc.
        var shapes = SyntheticShapes.GeneratePixels(1024, Size, seed: 11, out int[] shapeLabels);
        var trainingSquares = shapes.Where((_, i) => shapeLabels[i] == 1).ToArray();
        using var data = tensor(trainingSquares.SelectMany(p => p.Select(v => v * 2 - 1)).ToArray(), [trainingSquares.Length, 1, Size, Size]);
        using var trainer = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, options: DiffusionTrainerTests.FastOptions(seed: 4), device: CPU);
        trainer.Train(data, TrainingSteps);
        using var model = trainer.ToModel();

        // Squares (unseen seed) with at least two columns on each side of the mask's edge: their right part is hidden.
        var all = SyntheticShapes.GeneratePixels(2000, Size, seed: 99, out int[] labels);
        var squares = all.Where((p, i) => labels[i] == 1 && Columns(p).Count(x => x < Half) >= 2 && Columns(p).Count(x => x >= Half) >= 2).Take(Count).ToArray();
        Assert.Equal(Count, squares.Length);
        using var images = tensor(squares.SelectMany(p => p.Select(v => v * 2 - 1)).ToArray(), [Count, 1, Size, Size]);
        using var mask = zeros(Count, 1, Size, Size);
        mask[.., .., .., TensorIndex.Slice(Half, Size)] = tensor(1f);

        using var inpainted = model.Inpaint(new InpaintingOptions { Steps = 100, JumpLength = 10, Resamplings = 5 }, images, mask,
            Enumerable.Range(0, Count).Select(i => (long)i).ToArray());
        var redrawn = Rows(inpainted);
        var known = squares.Select(p => p.Select(v => v * 2 - 1).ToArray()).ToArray();

        // The measure: a square is completed when the bright pixels of the masked half overlap the true hidden part with
        // intersection over union ≥ 0.7 (bright = above mid-grey).
        double Rate(IEnumerable<float[]> fills) => fills.Zip(known).Count(p => HiddenIoU(p.First, p.Second) >= 0.7) / (double)Count;
        double diffusion = Rate(redrawn);
        double extend = Rate(known.Select(ExtendRows));
        double harmonic = Rate(known.Select(HarmonicFill));
        output.WriteLine($"completed squares: RePaint {diffusion:P0}, rows extended from the edge {extend:P0}, harmonic (Laplace) fill {harmonic:P0}");
        // Measured: RePaint 46 %, extended rows 19 %, harmonic fill 17 % (the tiny model's own samples are often speckled).
        Assert.True(diffusion >= 2 * Math.Max(extend, harmonic), $"RePaint {diffusion:P0} should complete at least twice as many squares as the model-free fills ({extend:P0}, {harmonic:P0})");
    }

    private static IEnumerable<int> Columns(float[] pixels)
        => Enumerable.Range(0, Size).Where(x => Enumerable.Range(0, Size).Any(y => pixels[y * Size + x] > 0.5f));

    private static float[][] Rows(Tensor images)
    {
        var all = images.cpu().data<float>().ToArray();
        return Enumerable.Range(0, (int)images.shape[0]).Select(i => all.AsSpan(i * Size * Size, Size * Size).ToArray()).ToArray();
    }

    private static double HiddenIoU(float[] filled, float[] truth)
    {
        int both = 0, either = 0;
        for (int y = 0; y < Size; y++)
            for (int x = Half; x < Size; x++)
            {
                bool a = filled[y * Size + x] > 0, b = truth[y * Size + x] > 0;
                if (a && b) both++;
                if (a || b) either++;
            }
        return either == 0 ? 1 : both / (double)either;
    }

    private static readonly (int Dx, int Dy)[] Neighbours = [(1, 0), (-1, 0), (0, 1), (0, -1)];

    // Each row's last kept pixel repeated to the border.
    private static float[] ExtendRows(float[] image)
    {
        var result = (float[])image.Clone();
        for (int y = 0; y < Size; y++)
            for (int x = Half; x < Size; x++)
                result[y * Size + x] = image[y * Size + Half - 1];
        return result;
    }

    // The smoothest fill of the hidden half given its kept border (Laplace's equation, by Jacobi iteration; the image's
    // outer edges are free).
    private static float[] HarmonicFill(float[] image)
    {
        var result = (float[])image.Clone();
        for (int y = 0; y < Size; y++)
            for (int x = Half; x < Size; x++)
                result[y * Size + x] = 0;
        for (int iteration = 0; iteration < 2000; iteration++)
        {
            var next = (float[])result.Clone();
            for (int y = 0; y < Size; y++)
                for (int x = Half; x < Size; x++)
                {
                    float sum = 0;
                    int n = 0;
                    foreach (var (dx, dy) in Neighbours)
                    {
                        int u = x + dx, v = y + dy;
                        if (u < 0 || u >= Size || v < 0 || v >= Size) continue;
                        sum += result[v * Size + u];
                        n++;
                    }
                    next[y * Size + x] = sum / n;
                }
            result = next;
        }
        return result;
    }
}
