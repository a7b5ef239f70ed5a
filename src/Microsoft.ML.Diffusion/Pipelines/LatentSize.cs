using Microsoft.ML.Diffusion.Models;

namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>The image size a latent model samples at, and whether its activations fit in memory, checked before anything is allocated.</summary>
internal static class LatentSize
{
    /// <summary>(height, width) in pixels: the options' or the model's own, each a positive multiple of the autoencoder's factor (8).</summary>
    public static (int Height, int Width) Of(DiffusionModel model, GenerationOptions options) => Of(model, options.Height, options.Width, nameof(options));

    /// <summary>(height, width) in pixels: the given ones or the model's own, each a positive multiple of the autoencoder's factor.</summary>
    public static (int Height, int Width) Of(DiffusionModel model, int? requestedHeight, int? requestedWidth, string parameter)
    {
        int factor = model.Autoencoder?.Config.DownscaleFactor ?? 1;
        int height = requestedHeight ?? (int)model.ImageShape[1];
        int width = requestedWidth ?? (int)model.ImageShape[2];
        if (height < factor || height % factor != 0 || width < factor || width % factor != 0)
            throw new ArgumentException($"Width and height must be positive multiples of {factor} (the autoencoder's factor); {width}×{height} is not.", parameter);
        return (height, width);
    }

    /// <summary>
    /// Refuses a size whose largest activations would not fit: the autoencoder's mid-block attention over every latent
    /// position (one h·w × h·w matrix per image) and the UNet's first-level features for a forward batch.
    /// </summary>
    public static void CheckMemory(DiffusionModel model, int height, int width, int forwardBatch)
    {
        long available = AvailableBytes();
        if (available <= 0) return;
        int factor = model.Autoencoder?.Config.DownscaleFactor ?? 1;
        double positions = (double)(height / factor) * (width / factor);
        double attention = 4 * positions * positions;                       // float32 scores, one head
        double features = 4.0 * forwardBatch * 320 * positions * 12;       // SD's first level: a dozen 320-channel maps alive
        double needed = attention + features;
        if (needed > available)
            throw new ArgumentException(
                $"{width}×{height} needs about {needed / (1L << 30):F1} GiB for its largest activations (the autoencoder's attention over {positions:N0} latent positions), " +
                $"but {available / (double)(1L << 30):F1} GiB are free; choose a smaller size.");
    }

    private static long AvailableBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }
}
