using Microsoft.ML.Diffusion.Imaging;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// Class-conditional image sets in interleaved order: image i is of class i % classCount, so the first
/// classCount images hold one of each class. Generated and real sets in this order line up image by image.
/// </summary>
public static class ClassInterleavedImages
{
    /// <summary>
    /// The first <paramref name="perClass"/> images of each class in <paramref name="images"/> (N, C, H, W),
    /// in interleaved order; <paramref name="labels"/> gives each image's class.
    /// </summary>
    public static Tensor Select(Tensor images, IReadOnlyList<long> labels, int classCount, int perClass)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        var byClass = Enumerable.Range(0, classCount)
            .Select(c => Enumerable.Range(0, labels.Count).Where(i => labels[i] == c).Take(perClass).ToArray()).ToArray();
        for (int c = 0; c < classCount; c++)
            if (byClass[c].Length < perClass)
                throw new ArgumentException($"Class {c} has {byClass[c].Length} images; {perClass} are needed.", nameof(labels));
        var order = Enumerable.Range(0, perClass * classCount).Select(i => (long)byClass[i % classCount][i / classCount]).ToArray();
        using var index = tensor(order);
        return images.index_select(0, index);
    }

    /// <summary>
    /// Saves interleaved <paramref name="images"/> (<paramref name="perClass"/> of each class) as a PNG grid
    /// with one row per class, showing the first <paramref name="columns"/> images of each (all when null).
    /// </summary>
    public static void SaveGrid(Tensor images, int classCount, int perClass, string path, int? columns = null, int scale = 2)
    {
        ArgumentNullException.ThrowIfNull(images);
        int shown = Math.Min(columns ?? perClass, perClass);
        var order = Enumerable.Range(0, classCount)
            .SelectMany(c => Enumerable.Range(0, shown).Select(j => (long)(j * classCount + c))).ToArray();
        using var index = tensor(order);
        using var grid = images.index_select(0, index);
        ImageGrid.SavePng(grid, path, columns: shown, scale: scale);
    }
}
