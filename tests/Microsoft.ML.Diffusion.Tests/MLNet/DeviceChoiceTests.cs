using Microsoft.ML.Diffusion.MLNet;
using Xunit;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// Where a loaded zip's model and a generation stage run: the loading MLContext chooses (GpuDeviceId, FallbackToCpu), and
/// <see cref="DiffusionStageOptions.Device"/> chooses for one stage. The machines here have no GPU, so a request for
/// one must either fall back as asked or fail with a clear error.
/// </summary>
public class DeviceChoiceTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "mldiff-device-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    private string TrainedZip()
    {
        var ml = new MLContext(seed: 1);
        string images = Path.Combine(_folder, "images");
        var paths = MLNetTestData.WriteShapeImages(images, count: 8);
        var data = ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { Path = Path.GetFileName(p) }));
        var model = ml.Transforms.LoadImages("Image", images, nameof(ImagePathRow.Path))
            .Append(ml.Transforms.ResizeImages("Image", 8, 8))
            .Append(ml.Transforms.TrainDiffusion(MLNetTestData.TinyTraining(steps: 2)))
            .Fit(data);
        string zip = Path.Combine(_folder, "model.zip");
        ml.Model.Save(model, data.Schema, zip);
        return zip;
    }

    [SkippableFact]
    public void TheLoadingContextChoosesTheDeviceAndAGpuItCannotHaveIsAClearErrorUnlessItMayFallBack()
    {
        string zip = TrainedZip();
        Skip.If(TorchSharp.torch.cuda.is_available(), "this machine has CUDA; the test checks the fallback on machines without it");

        var strict = new MLContext { GpuDeviceId = 0, FallbackToCpu = false };
        // ML.NET's loader wraps the stage's exception (TargetInvocationException); the innermost one names the problem.
        var e = Assert.IsType<InvalidOperationException>(Assert.ThrowsAny<Exception>(() => strict.Model.Load(zip, out _)).GetBaseException());
        Assert.Contains("GPU 0 (GpuDeviceId)", e.Message);
        Assert.Contains("FallbackToCpu", e.Message);

        var lenient = new MLContext { GpuDeviceId = 0, FallbackToCpu = true };
        var loaded = lenient.Model.Load(zip, out _);
        Assert.Equal(TorchSharp.DeviceType.CPU, DiffusionTrainingTransformer.FindModel(loaded).Device.type);
        Assert.Equal(TorchSharp.DeviceType.CPU, DiffusionTrainingTransformer.FindModel(new MLContext().Model.Load(zip, out _)).Device.type);
    }

    [Fact]
    public void AStageGeneratesOnTheDeviceItNamesWhichIsNotSavedInTheZip()
    {
        var ml = new MLContext(seed: 3);
        var loaded = ml.Model.Load(TrainedZip(), out _);
        var seeds = ml.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 } });
        var options = new DiffusionGenerationOptions { OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = "ddim", Steps = 2 }, Device = "cpu" };
        var stage = ml.Transforms.DiffusionGenerate(loaded, options).Fit(seeds);
        Assert.Same(DiffusionTrainingTransformer.FindModel(loaded), stage.Model);   // already there: shared, not copied

        string zip = Path.Combine(_folder, "stage.zip");
        ml.Model.Save(stage, seeds.Schema, zip);
        var reloaded = (DiffusionGenerationTransformer)ml.Model.Load(zip, out _);
        Assert.Null(reloaded.Options.Device);
        Assert.Equal("ddim", reloaded.Options.Generation.Sampler.ToString());

        if (!TorchSharp.torch.cuda.is_available())
        {
            var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.DiffusionGenerate(loaded, options with { Device = "cuda" }).Fit(seeds));
            Assert.Contains("no CUDA device", e.Message);
        }
    }
}
