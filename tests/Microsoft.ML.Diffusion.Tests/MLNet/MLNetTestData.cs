using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

public sealed class ImagePathRow
{
    public string Path { get; set; } = "";
}

public sealed class SeedRow
{
    public int Seed { get; set; }
}

/// <summary>A small built-in image set written as PNG files, and tiny training settings.</summary>
public static class MLNetTestData
{
    /// <summary>Writes <paramref name="count"/> 20×20 RGB shape images (resized to 16×16 by the pipelines).</summary>
    public static string[] WriteShapeImages(string folder, int count = 48)
    {
        Directory.CreateDirectory(folder);
        var images = SyntheticShapes.GeneratePixels(count, 20, seed: 5);
        var paths = new string[count];
        for (int i = 0; i < count; i++)
        {
            var rgba = new byte[20 * 20 * 4];
            for (int p = 0; p < 400; p++)
            {
                byte v = (byte)(images[i][p] * 255);
                rgba[p * 4] = v; rgba[p * 4 + 1] = (byte)(v / 2); rgba[p * 4 + 2] = (byte)(255 - v); rgba[p * 4 + 3] = 255;
            }
            paths[i] = System.IO.Path.Combine(folder, $"shape{i:D3}.png");
            using var image = MLImage.CreateFromPixels(20, 20, MLPixelFormat.Rgba32, rgba);
            image.Save(paths[i]);
        }
        return paths;
    }

    public static DiffusionTrainingOptions TinyTraining(int steps = 30) => new()
    {
        ImageColumnName = "Image",
        ImageChannels = 1,
        BaseChannels = 16,
        ChannelMultipliers = [1, 2],
        AttentionResolutions = [8],
        TrainingSteps = steps,
        BatchSize = 16,
        LearningRate = 2e-3,
        WarmupSteps = 5,
        EmaDecay = 0.9,
        Seed = 1,
        Device = "cpu",
        ReportEvery = 10,
    };
}
