using Microsoft.ML.Diffusion.Cli.Data;
using Microsoft.ML.Diffusion.MLNet;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>Training from IDX files and image folders through the CLI.</summary>
public sealed class DataSourceTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-data-").FullName;

    private string In(string name) => Path.Combine(_folder, name);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void TrainsFromAGzippedIdxFileResizedToTheRequestedSize()
    {
        TestImages.WriteIdx(In("shapes-idx3-ubyte.gz"), count: 64, size: 20);
        string zip = In("idx-model.zip");
        var training = Run(["train", "--idx", In("shapes-idx3-ubyte.gz"), .. TinyTraining(6), "--out", zip]);
        Succeeded(training);
        Assert.Contains("64 images from IDX file", training.Output);
        Assert.Contains("at 16×16", training.Output);
        var model = DiffusionTrainingTransformer.FindModel(new MLContext().Model.Load(zip, out _));
        Assert.Equal([1L, 16, 16], model.ImageShape);
        Assert.Equal(6, model.TrainingSteps);
    }

    [Fact]
    public void TrainsFromAnImageFolderThroughLoadImagesAndEvaluatesAgainstIt()
    {
        string images = In("images");
        TestImages.WriteShapes(images, count: 24);
        string zip = In("folder-model.zip");
        var training = Run(["train", "--images", images, "--channels", "3", .. TinyTraining(6), "--out", zip]);
        Succeeded(training);
        Assert.Contains("24 images from", training.Output);

        var info = Run("info", "--model", zip);
        Succeeded(info);
        Assert.Contains("ImageLoadingTransformer → ImageResizingTransformer → DiffusionTrainingTransformer", info.Output);
        Assert.Contains("3×16×16", info.Output);

        var evaluation = Run("evaluate", "--model", zip, "--images", images, "--count", "4", "--sampler", "ddim", "--steps", "3");
        Succeeded(evaluation);
        Assert.Contains("24 images from", evaluation.Output);
        Assert.Contains("clipped Gaussian noise", evaluation.Output);
    }
}
