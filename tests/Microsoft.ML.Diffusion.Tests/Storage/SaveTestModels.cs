using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Storage;

/// <summary>Small models to save, as checkpoints and as ML.NET model zips, and a weight comparison.</summary>
internal static class SaveTestModels
{
    /// <summary>A seeded UNet model on 1×8×8 images; its weights grow with the square of <paramref name="baseChannels"/>.</summary>
    public static DiffusionModel Model(int baseChannels, int seed)
    {
        manual_seed(seed);
        var network = NoisePredictors.Create(new UNetOptions
        {
            ImageChannels = 1, ImageSize = 8, BaseChannels = baseChannels, ChannelMultipliers = [1, 2], AttentionResolutions = [4],
            NormGroups = Math.Min(8, baseChannels),
        });
        return new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
    }

    /// <summary>A fitted DiffusionGenerate stage over <paramref name="model"/> and its input schema: what a model zip holds.</summary>
    public static (ITransformer Stage, DataViewSchema Schema) Stage(MLContext ml, DiffusionModel model)
    {
        var rows = ml.Data.LoadFromEnumerable(new[] { new MLNet.SeedRow { Seed = 1 } });
        return (ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions()).Fit(rows), rows.Schema);
    }

    /// <summary>The model a zip's diffusion stage holds.</summary>
    public static DiffusionModel LoadZip(MLContext ml, string path) => DiffusionTrainingTransformer.FindModel(ml.Model.Load(path, out _));

    public static void SameWeights(NoisePredictor expected, NoisePredictor actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, tensor) in a)
            Assert.True(tensor.allclose(b[name], rtol: 0, atol: 0), $"weight '{name}' differs");
    }

    /// <summary>Every file in <paramref name="folder"/> but <paramref name="expected"/>: leftovers such as temporary files.</summary>
    public static string[] Others(string folder, params string[] expected)
        => [.. Directory.GetFiles(folder).Select(Path.GetFileName).Where(f => !expected.Contains(f))!];
}
