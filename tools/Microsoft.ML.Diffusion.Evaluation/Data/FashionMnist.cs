using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// Fashion-MNIST (Zalando's 28×28 grey images of clothing in 10 classes) from the IDX files installed by
/// Debian's <c>dataset-fashion-mnist</c> package in <see cref="DefaultDirectory"/>, or from any folder
/// holding the four files (gzipped or not) under their usual names.
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The environment variable that, when set, overrides <see cref="DefaultDirectory"/>.</summary>
    public const string DirectoryVariable = "FASHION_MNIST_DIR";

    /// <summary>Images are <see cref="ImageSize"/>×<see cref="ImageSize"/>.</summary>
    public const int ImageSize = 28;

    /// <summary>Number of classes.</summary>
    public const int ClassCount = 10;

    /// <summary>How to install the data.</summary>
    public const string InstallHint = "install it with 'bash eng/install-data.sh' (or 'apt-get install dataset-fashion-mnist' as root)";

    /// <summary>The class names, indexed by label.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>A short text prompt per class, indexed by label.</summary>
    public static IReadOnlyList<string> Prompts { get; } =
        ["a t-shirt", "a pair of trousers", "a pullover", "a dress", "a coat", "a sandal", "a shirt", "a sneaker", "a bag", "an ankle boot"];

    /// <summary>The folder searched: <see cref="DirectoryVariable"/> when set, otherwise <see cref="DefaultDirectory"/>.</summary>
    public static string ResolveDirectory(string? directory = null)
        => directory ?? (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } env ? env : DefaultDirectory);

    /// <summary>The images file and labels file of <paramref name="split"/>, or null for a file that is missing.</summary>
    public static (string? Images, string? Labels) FindFiles(FashionMnistSplit split, string? directory = null)
    {
        string dir = ResolveDirectory(directory);
        string prefix = split == FashionMnistSplit.Train ? "train" : "t10k";
        return (Find(dir, $"{prefix}-images-idx3-ubyte"), Find(dir, $"{prefix}-labels-idx1-ubyte"));
    }

    private static string? Find(string directory, string baseName)
    {
        foreach (var name in new[] { baseName + ".gz", baseName, baseName.Replace("-idx", ".idx", StringComparison.Ordinal) })
        {
            string path = Path.Combine(directory, name);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    /// <summary>
    /// Whether both splits are present; when not, <paramref name="reason"/> says which file is missing
    /// and how to install the data.
    /// </summary>
    public static bool IsAvailable(out string reason, string? directory = null)
    {
        string dir = ResolveDirectory(directory);
        foreach (var split in new[] { FashionMnistSplit.Train, FashionMnistSplit.Test })
        {
            var (images, labels) = FindFiles(split, dir);
            if (images is null || labels is null)
            {
                string prefix = split == FashionMnistSplit.Train ? "train" : "t10k";
                string missing = images is null ? $"{prefix}-images-idx3-ubyte[.gz]" : $"{prefix}-labels-idx1-ubyte[.gz]";
                reason = $"Fashion-MNIST is not installed: '{Path.Combine(dir, missing)}' is missing; {InstallHint}.";
                return false;
            }
        }
        reason = $"Fashion-MNIST is installed in '{dir}'.";
        return true;
    }

    /// <summary>The raw bytes of <paramref name="split"/>: Count × 28 × 28 pixels and Count labels.</summary>
    public static (byte[] Pixels, byte[] Labels, int Count) LoadRaw(FashionMnistSplit split, string? directory = null, int? maxItems = null)
    {
        var (imagesPath, labelsPath) = FindFiles(split, directory);
        if (imagesPath is null || labelsPath is null)
        {
            IsAvailable(out string reason, ResolveDirectory(directory));
            throw new FileNotFoundException(reason);
        }
        var (pixels, labels, count, height, width) = IdxFile.ReadLabeledImages(imagesPath, labelsPath, maxItems);
        if (height != ImageSize || width != ImageSize)
            throw IdxFile.Fail(imagesPath, $"IDX file '{imagesPath}' holds {height}×{width} images; Fashion-MNIST's are {ImageSize}×{ImageSize}.");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= ClassCount)
                throw IdxFile.Fail(labelsPath, $"IDX file '{labelsPath}' has label {labels[i]} at item {i}; Fashion-MNIST's labels are 0–{ClassCount - 1}.");
        return (pixels, labels, count);
    }

    /// <summary>The rows of <paramref name="split"/> (pixels 0–255), in file order.</summary>
    public static IReadOnlyList<FashionMnistRow> Load(FashionMnistSplit split, string? directory = null, int? maxItems = null)
    {
        var (pixels, labels, count) = LoadRaw(split, directory, maxItems);
        const int area = ImageSize * ImageSize;
        var rows = new FashionMnistRow[count];
        for (int i = 0; i < count; i++)
        {
            var row = new float[area];
            var source = pixels.AsSpan(i * area, area);
            for (int j = 0; j < area; j++) row[j] = source[j];
            int label = labels[i];
            rows[i] = new FashionMnistRow { Pixels = row, Label = label, ClassName = ClassNames[label], Prompt = Prompts[label] };
        }
        return rows;
    }

    /// <summary>
    /// <paramref name="split"/> as an ML.NET data view with columns Pixels (Vector&lt;Single&gt; 1×28×28,
    /// values 0–255), Label (Int32, 0–9), ClassName and Prompt (Text).
    /// </summary>
    public static IDataView LoadDataView(MLContext ml, FashionMnistSplit split, string? directory = null, int? maxItems = null)
    {
        ArgumentNullException.ThrowIfNull(ml);
        return ml.Data.LoadFromEnumerable(Load(split, directory, maxItems));
    }

    /// <summary>
    /// <paramref name="split"/> as a tensor (N, 1, 28, 28) scaled to [−1, 1], with the labels, ready for
    /// training a network.
    /// </summary>
    public static Tensor LoadTensor(FashionMnistSplit split, out long[] labels, string? directory = null, int? maxItems = null)
    {
        var (pixels, rawLabels, count) = LoadRaw(split, directory, maxItems);
        labels = new long[count];
        for (int i = 0; i < count; i++) labels[i] = rawLabels[i];
        var values = new float[pixels.Length];
        for (int i = 0; i < pixels.Length; i++) values[i] = pixels[i] / 127.5f - 1f;
        return tensor(values, [count, 1, ImageSize, ImageSize]);
    }
}
