using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>TrainDiffusion continuing from a pretrained model (a diffusers folder diffusers itself wrote).</summary>
public sealed class FineTuningTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-finetune-").FullName;

    private sealed class Row
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = new float[64];
    }

    private sealed class LargeRow
    {
        [VectorType(1, 16, 16)]
        public float[] Pixels { get; set; } = new float[256];
    }

    private string Pipeline()
    {
        string folder = Path.Combine(_folder, "pipeline");
        string fixtures = Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers");
        Directory.CreateDirectory(folder);
        foreach (string file in new[] { "unet-attn/config.json", "unet-attn/diffusion_pytorch_model.safetensors", "ddim-trailing-v/scheduler_config.json" })
            File.Copy(Path.Combine(fixtures, file), Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
        return folder;
    }

    private static IDataView Data(MLContext ml) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, 16).Select(i => new Row
    {
        Pixels = Enumerable.Range(0, 64).Select(p => (float)((i * 7 + p * 3) % 256)).ToArray(),
    }).ToList());

    private static float[] Weights(DiffusionModel model) => model.Network.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();

    private static DiffusionTrainingOptions Options(DiffusionModel start, int steps) => new()
    {
        ImageColumnName = "Pixels", ImageChannels = 1, StartFrom = start, TrainingSteps = steps, BatchSize = 8,
        WarmupSteps = 1, LearningRate = 1e-3, Seed = 1, Device = "cpu", ReportEvery = 1,
    };

    [Fact]
    public void TrainingStartsFromThePretrainedWeightsScheduleAndPrediction()
    {
        var ml = new MLContext(seed: 1);
        using var pretrained = DiffusersFormat.Load(Pipeline(), CPU);

        // No steps: the result is the pretrained model itself.
        using (var unchanged = ml.Transforms.TrainDiffusion(Options(pretrained, 0)).Fit(Data(ml)))
        {
            Assert.IsType<UNet2DModelNoisePredictor>(unchanged.Model.Network);
            Assert.Equal(PredictionType.VPrediction, unchanged.Model.Prediction);
            Assert.Equal(pretrained.ScheduleOptions, unchanged.Model.ScheduleOptions);
            Assert.Equal(Weights(pretrained), Weights(unchanged.Model));
        }

        // A few steps move the weights a little from there, and the result still writes as a diffusers folder.
        var losses = new List<double>();
        var options = Options(pretrained, 3);
        options.Progress = p => losses.Add(p.Loss);
        using var tuned = ml.Transforms.TrainDiffusion(options).Fit(Data(ml));
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        var before = Weights(pretrained);
        var after = Weights(tuned.Model);
        Assert.NotEqual(before, after);
        double largest = before.Zip(after, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(largest < 0.05, $"largest weight change {largest}");
        tuned.Model.SaveDiffusers(Path.Combine(_folder, "tuned"));
        Assert.True(File.Exists(Path.Combine(_folder, "tuned", "unet", "diffusion_pytorch_model.safetensors")));
    }

    [Fact]
    public void ImagesOfAnotherSizeOrAConditionTheModelLacksAreNamed()
    {
        var ml = new MLContext(seed: 1);
        using var pretrained = DiffusersFormat.Load(Pipeline(), CPU);
        var large = ml.Data.LoadFromEnumerable(new[] { new LargeRow() });
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.TrainDiffusion(Options(pretrained, 1)).Fit(large));
        Assert.Contains("takes 1×8×8 images, but column 'Pixels' gives 1×16×16", error.Message);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
