using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The Fashion-MNIST sample with a tiny network and step count; skipped when the data is not installed.</summary>
public sealed class FashionMnistSampleTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-fashion-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static FashionMnistSampleOptions Tiny(FashionCondition condition) => new()
    {
        Condition = condition, Steps = 4, MaxTrainingImages = 256, BaseChannels = 16, ChannelMultipliers = [1, 2],
        SamplesPerClass = 2, GuidanceScales = [0, 3],
    };

    [SkippableTheory]
    [InlineData(FashionCondition.Class)]
    [InlineData(FashionCondition.Text)]
    public void TrainsSavesAndGeneratesAGridPerGuidanceScale(FashionCondition condition)
    {
        Skip.IfNot(FashionMnist.IsAvailable(out string reason), reason);
        var log = new StringWriter();
        var result = FashionMnistSample.Run(_folder, Tiny(condition), log);

        Assert.True(File.Exists(result.ModelZip), result.ModelZip);
        Assert.Equal(2, result.Grids.Count);
        foreach (string grid in result.Grids.Append(result.RealGrid))
            Assert.Equal(GridSize(20, columns: 2, size: 28, scale: 2), PngSize(grid));
        Assert.Contains("step 4/4", log.ToString());
        Assert.Null(result.ClassifierAccuracy);
        Assert.Empty(result.ClassAccuracyByGuidance);
    }

    [Fact]
    public void MissingDataIsReportedWithTheInstallHint()
    {
        string empty = Directory.CreateTempSubdirectory("mldiffusion-nofashion-").FullName;
        string? previous = Environment.GetEnvironmentVariable(FashionMnist.DirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(FashionMnist.DirectoryVariable, empty);
            var e = Assert.Throws<FileNotFoundException>(() => FashionMnistSample.Run(_folder, Tiny(FashionCondition.Class), TextWriter.Null));
            Assert.Contains("install-data.sh", e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(FashionMnist.DirectoryVariable, previous);
            Directory.Delete(empty);
        }
    }
}
