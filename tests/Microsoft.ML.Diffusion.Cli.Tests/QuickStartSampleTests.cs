using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The QuickStart sample (the main job) with a tiny network, data set, schedule and step count.</summary>
public sealed class QuickStartSampleTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-quickstart-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void TrainsSavesReloadsAndWritesAGridPerSampler()
    {
        var log = new StringWriter();
        var options = new QuickStartOptions
        {
            Steps = 4, TrainingImages = 64, BaseChannels = 16, Samples = 4, DiffusionSteps = 50, DisplaySize = 32, ReportEvery = 2,
        };
        var result = QuickStartSample.Run(_folder, options, log);

        Assert.True(File.Exists(result.ModelZip), result.ModelZip);
        var reloaded = new MLContext().Model.Load(result.ModelZip, out var schema);
        Assert.Equal(4, DiffusionTrainingTransformer.FindModel(reloaded).TrainingSteps);
        Assert.NotNull(schema.GetColumnOrNull("Pixels"));

        Assert.Equal(["samples-dpmsolver-20-steps.png", "samples-ddim-50-steps.png", "samples-euler-ancestral-30-steps.png", "samples-heun-15-steps.png"],
            result.Grids.Select(g => Path.GetFileName(g.Path)));
        foreach (var grid in result.Grids)
            Assert.Equal(GridSize(4, columns: 8, size: 32, scale: 1), PngSize(grid.Path));
        Assert.Equal(GridSize(4, columns: 8, size: 16, scale: 2), PngSize(result.TrainingGrid));

        output.WriteLine(log.ToString());
        string text = log.ToString();
        Assert.Contains("step     4/4", text);
        Assert.Contains($"Model zip: {Path.GetFullPath(result.ModelZip)}", text);
        foreach (var grid in result.Grids) Assert.Contains(Path.GetFullPath(grid.Path), text);
    }
}
