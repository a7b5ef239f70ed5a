using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The Fashion-MNIST editing sample with a tiny network and step count; skipped when the data is not installed.</summary>
public sealed class FashionMnistEditingSampleTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-fashion-editing-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [SkippableFact]
    public void TrainsThenWritesTheEditingInpaintingAndInterpolationGrids()
    {
        Skip.IfNot(FashionMnist.IsAvailable(out string reason), reason);
        var log = new StringWriter();
        var options = new FashionMnistEditingOptions
        {
            Steps = 4, MaxTrainingImages = 256, BaseChannels = 16, ChannelMultipliers = [1, 2], Strengths = [0, 0.5, 1], Images = 2,
            InpaintingSteps = 10, TimedImages = 2,
        };
        var result = FashionMnistEditingSample.Run(_folder, options, log);

        Assert.Equal(GridSize(6, columns: 3, size: 28, scale: 2), PngSize(result.ShirtToBagGrid));     // 2 shirts × 3 strengths
        Assert.Equal(GridSize(6, columns: 3, size: 28, scale: 2), PngSize(result.InpaintingGrid));     // 2 garments × (input, masked, filled)
        Assert.Equal(GridSize(16, columns: 8, size: 28, scale: 2), PngSize(result.InterpolationGrid)); // class strip and seed strip
        Assert.True(result.GenerateSecondsPerImage > 0 && result.EditSecondsPerImage > 0);
        Assert.Contains("step 4/4", log.ToString());
        Assert.Contains("edit at strength 0.5", log.ToString());

        // The model file it wrote can be given back with Model, skipping training.
        var again = FashionMnistEditingSample.Run(Path.Combine(_folder, "again"), options with { Model = Path.Combine(_folder, "fashion-class.zip"), TimedImages = 0 }, TextWriter.Null);
        Assert.Equal(File.ReadAllBytes(result.ShirtToBagGrid), File.ReadAllBytes(again.ShirtToBagGrid));
        Assert.Null(again.EditSecondsPerImage);
    }
}
