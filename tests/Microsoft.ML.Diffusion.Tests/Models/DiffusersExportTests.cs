using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Tests.Infrastructure;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>A model trained here, written as a diffusers folder: it reads back, and diffusers itself gives the same outputs and images.</summary>
public sealed class DiffusersExportTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-export-").FullName;

    private static readonly UNet2DModelOptions Tiny = new()
    {
        ImageChannels = 1, ImageSize = 8, BlockOutChannels = [8, 16], LayersPerBlock = 1, NormNumGroups = 4, AttentionHeadDim = 4,
        DownBlockTypes = ["DownBlock2D", "AttnDownBlock2D"], UpBlockTypes = ["AttnUpBlock2D", "UpBlock2D"],
    };

    // Trains the tiny UNet2DModel a few steps (so no weight is at its initial value), writes it as a diffusers folder,
    // and records its output on fixed inputs and a DDIM trajectory from fixed noise in check.safetensors.
    private string TrainAndExport()
    {
        using var trainer = new DiffusionTrainer(Tiny, new NoiseScheduleOptions(), new DiffusionTrainerOptions { BatchSize = 8, Seed = 5, WarmupSteps = 1, LearningRate = 1e-3, EmaDecay = 0 });
        using (var data = rand(32, 1, 8, 8, generator: new Generator(1)) * 2 - 1) trainer.Train(data, steps: 5);
        using var model = trainer.ToModel();
        string folder = Path.Combine(_folder, "exported");
        model.SaveDiffusers(folder);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(7);
        var sample = randn(2, 1, 8, 8, generator: generator);
        var timestep = tensor(new long[] { 3, 517 });
        var output = model.Network.Forward(sample, timestep, null);
        var noise = randn(2, 1, 8, 8, generator: generator);
        using var sampler = DiffusionSamplers.Create("ddim", model.Schedule, new SamplerOptions { Clipping = X0Clipping.None });
        var images = SamplingLoop.Run(model.AsDenoiser(), sampler, noise, steps: 10);
        File.WriteAllBytes(Path.Combine(folder, "check.safetensors"), SafeTensors.Write(
        [
            ("sample", sample), ("timestep", timestep), ("output", output),
            ("initial_noise", noise), ("steps", tensor(new long[] { 10 })), ("images", images),
        ]));
        return folder;
    }

    [Fact]
    public void AnExportedFolderReadsBackAsTheSameModel()
    {
        string folder = TrainAndExport();
        Assert.True(File.Exists(Path.Combine(folder, "model_index.json")));
        using var model = DiffusersFormat.Load(folder, CPU);
        var check = SafeTensors.Read(File.ReadAllBytes(Path.Combine(folder, "check.safetensors")), "check");
        using var noGrad = no_grad();
        using var output = model.Network.Forward(check["sample"], check["timestep"], null);
        Assert.Equal(check["output"].data<float>().ToArray(), output.data<float>().ToArray());
        Assert.Equal("ddpm", GenerationOptions.FromDiffusers(folder).Sampler.ToString());
    }

    // Opt-in: needs a diffusers checkout (DiffusersCheckout).
    [SkippableFact]
    public void DiffusersItselfLoadsTheExportedFolderAndGivesTheSameImages()
    {
        string source = DiffusersCheckout.SourceOrSkip();
        string folder = TrainAndExport();
        DiffusersCheckout.Check("check_export.py", source, folder);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
