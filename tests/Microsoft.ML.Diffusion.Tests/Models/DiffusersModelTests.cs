using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>A diffusers model folder (UNet2DModel + scheduler) as a DiffusionModel: both folder layouts, sampling, and saving in the library's format.</summary>
public sealed class DiffusersModelTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-diffusers-model-").FullName;

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", name);

    private static void CopyInto(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from).Where(f => !f.EndsWith("io.safetensors") && !f.EndsWith("trajectory.safetensors")))
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    [Fact]
    public void APipelineFolderLoadsWithItsScheduleAndGeneratesLikeItsSavedCopy()
    {
        // The layout of diffusers' pipelines: unet/ and scheduler/ subfolders.
        string pipeline = Path.Combine(_folder, "pipeline");
        CopyInto(Fixture("unet-attn"), Path.Combine(pipeline, "unet"));
        CopyInto(Fixture("ddim-trailing-v"), Path.Combine(pipeline, "scheduler"));
        using var model = DiffusersFormat.Load(pipeline, CPU);
        Assert.IsType<UNet2DModelNoisePredictor>(model.Network);
        Assert.Equal(PredictionType.VPrediction, model.Prediction);
        Assert.Equal(NoiseScheduleKind.ScaledLinear, model.ScheduleOptions.Kind);
        Assert.Equal(0.00085, model.ScheduleOptions.BetaStart);

        var options = GenerationOptions.FromDiffusers(pipeline);
        Assert.Equal("ddim", options.Sampler.ToString());
        Assert.Equal(TimestepSpacing.Trailing, options.SamplerOptions.Spacing);
        Assert.Equal(X0Clipping.None, options.SamplerOptions.Clipping);
        options.Steps = 4;
        using var images = model.Generate(options, [1, 2]);
        Assert.Equal(new long[] { 2, 1, 8, 8 }, images.shape);

        // Saved in the library's checkpoint format, it reloads as the same network and generates the same images.
        string checkpoint = Path.Combine(_folder, "model.mldiff");
        model.Save(checkpoint);
        using var reloaded = DiffusionModel.Load(checkpoint, CPU);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(model.NetworkOptions, DiffusionCheckpoint.JsonOptions),
                     System.Text.Json.JsonSerializer.Serialize(reloaded.NetworkOptions, DiffusionCheckpoint.JsonOptions));
        using var again = reloaded.Generate(options, [1, 2]);
        Assert.Equal(images.data<float>().ToArray(), again.data<float>().ToArray());
    }

    [Fact]
    public void AFlatFolderLoadsAndAMissingSchedulerIsNamed()
    {
        // The older flat layout (google/ddpm-cifar10-32's): config.json, weights and scheduler_config.json side by side.
        string flat = Path.Combine(_folder, "flat");
        CopyInto(Fixture("unet-ddpm"), flat);
        CopyInto(Fixture("ddpm-linear"), flat);
        using (var model = DiffusersFormat.Load(flat, CPU))
            Assert.Equal(3, model.NetworkOptions.ImageChannels);
        Assert.Equal("ddpm", GenerationOptions.FromDiffusers(flat).Sampler.ToString());

        string unetOnly = Path.Combine(_folder, "unet-only");
        CopyInto(Fixture("unet-ddpm"), unetOnly);
        var error = Assert.Throws<FileNotFoundException>(() => DiffusersFormat.Load(unetOnly, CPU));
        Assert.Contains("has no scheduler_config.json", error.Message);
    }

    [Fact]
    public void AnIncompleteFolderNamesEverythingItLacksInOneMessage()
    {
        string empty = Path.Combine(_folder, "empty");
        Directory.CreateDirectory(empty);
        var error = Assert.Throws<FileNotFoundException>(() => DiffusersFormat.Load(empty, CPU));
        Assert.Contains($"'{empty}' has no scheduler_config.json", error.Message);
        Assert.Contains("config.json (nor unet/config.json)", error.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors", error.Message);

        // With a unet/ folder, the network's files are looked for in it.
        string pipeline = Path.Combine(_folder, "pipeline");
        CopyInto(Fixture("ddim-leading"), Path.Combine(pipeline, "scheduler"));
        Directory.CreateDirectory(Path.Combine(pipeline, "unet"));
        var unet = Assert.Throws<FileNotFoundException>(() => DiffusersFormat.Load(pipeline, CPU));
        Assert.Contains("unet/config.json", unet.Message);
        Assert.Contains("unet/diffusion_pytorch_model.safetensors", unet.Message);
        Assert.DoesNotContain("scheduler_config.json", unet.Message);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
