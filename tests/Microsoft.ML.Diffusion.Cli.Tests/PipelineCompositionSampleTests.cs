using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The PipelineComposition sample's steps with a tiny step count.</summary>
public sealed class PipelineCompositionSampleTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-sample-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void TrainsSavesReloadsComposesAndWritesGrids()
    {
        var log = new StringWriter();
        var result = PipelineCompositionSample.Run(_folder, steps: 6, log);

        Assert.Equal(6, result.TrainedSteps);
        Assert.True(File.Exists(result.ModelZip));
        Assert.True(File.Exists(result.GenerationZip));
        Assert.Equal(3 * 16 * 16 + 16 * 16, result.FeatureLength);   // colour pixels + grey pixels
        foreach (string grid in new[] { result.TrainingGrid, result.ColourGrid, result.GreyGrid })
            Assert.Equal(GridSize(16, columns: 8, size: 16, scale: 4), PngSize(grid));
        Assert.Contains("'Picture' is a 16×16 image column", log.ToString());
    }
}
