using System.Diagnostics;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The PretrainedDiffusers sample on a diffusers folder diffusers itself wrote (a tiny stand-in for google/ddpm-cifar10-32).</summary>
public sealed class PretrainedDiffusersSampleTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-pretrained-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void GeneratesThroughDiffusionGenerateAndSavesAReloadableZip()
    {
        // The flat layout of google/ddpm-cifar10-32: config.json, weights and scheduler_config.json (a DDPMScheduler) side by side.
        string model = Path.Combine(_folder, "model");
        Directory.CreateDirectory(model);
        string fixtures = Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers");
        foreach (string file in new[] { "unet-ddpm/config.json", "unet-ddpm/diffusion_pytorch_model.safetensors", "ddpm-linear/scheduler_config.json" })
            File.Copy(Path.Combine(fixtures, file), Path.Combine(model, Path.GetFileName(file)));

        var log = new StringWriter();
        var result = PretrainedDiffusersSample.Run(model, Path.Combine(_folder, "out"), count: 4, steps: 5, log);

        Assert.Equal("ddim", result.Sampler);   // the scheduler's DDPM swapped for DDIM on the same schedule
        Assert.Equal(new long[] { 3, 8, 8 }, result.ImageShape);
        Assert.True(File.Exists(result.ModelZip));
        Assert.Equal(GridSize(4, columns: 8, size: 8, scale: 4), PngSize(result.Grid));
        Assert.Contains("UNet2DModel of 3×8×8 images", log.ToString());
    }

    [Fact]
    public void WithoutAFolderItSaysHowToGetOne()
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "PretrainedDiffusers.dll")]) { RedirectStandardOutput = true };
        using var sample = System.Diagnostics.Process.Start(start)!;
        string output = sample.StandardOutput.ReadToEnd();
        sample.WaitForExit();
        Assert.Equal(1, sample.ExitCode);
        Assert.Contains("google/ddpm-cifar10-32", output);
        Assert.Contains("snapshot_download", output);
    }
}
