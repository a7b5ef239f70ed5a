using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Tests.Networks;
using Xunit;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>A network the library does not know, registered from this test assembly, through the whole product.</summary>
public sealed class CustomNetworkTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-custom-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private sealed class PixelRow
    {
        [VectorType(1 * 8 * 8)]
        public float[] Pixels { get; set; } = [];

        public int Label { get; set; }
    }

    // Bright squares (label 0) and dark ones (label 1) on a mid-grey 8×8 background.
    private static IDataView Squares(MLContext ml)
    {
        var random = new Random(3);
        var rows = Enumerable.Range(0, 64).Select(i =>
        {
            var pixels = Enumerable.Repeat(128f, 64).ToArray();
            int x = random.Next(0, 5), y = random.Next(0, 5);
            for (int dy = 0; dy < 4; dy++) for (int dx = 0; dx < 4; dx++) pixels[(y + dy) * 8 + x + dx] = i % 2 == 0 ? 250f : 5f;
            return new PixelRow { Pixels = pixels, Label = i % 2 };
        });
        return ml.Data.LoadFromEnumerable(rows);
    }

    private static DiffusionTrainingOptions Training(string? conditionColumn) => new()
    {
        ImageColumnName = "Pixels", ImageChannels = 1, PixelRange = PixelRange.Bytes,
        ConditionColumnName = conditionColumn, ClassCount = conditionColumn is null ? null : 2,
        Network = new TinyConvOptions { Width = 8 },
        TrainingSteps = 20, BatchSize = 16, LearningRate = 1e-3, WarmupSteps = 2, Seed = 1, Device = "cpu", ReportEvery = 10,
    };

    [Fact]
    public void AUserNetworkTrainsThroughTrainDiffusionAndAFreshProcessGeneratesTheSameImages()
    {
        var ml = new MLContext(seed: 1);
        var trained = ml.Transforms.TrainDiffusion(Training(conditionColumn: null)).Fit(Squares(ml));
        var model = trained.Model;
        Assert.IsType<TinyConvNoisePredictor>(model.Network);
        Assert.Equal(8, ((TinyConvOptions)model.NetworkOptions).Width);
        Assert.Equal(20, model.TrainingSteps);

        var seeds = ml.Data.LoadFromEnumerable(new[] { 7, 8, 9 }.Select(s => new SeedRow { Seed = s }));
        var chain = ml.Transforms.DiffusionGenerate(trained, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 8 }, OutputKind = GeneratedOutputKind.Pixels,
        }).Fit(seeds);
        string zip = Path.Combine(_folder, "custom.zip");
        ml.Model.Save(chain, seeds.Schema, zip);
        var expected = chain.Transform(seeds).GetColumn<VBuffer<float>>("Generated")
            .Select(v => string.Join(",", v.DenseValues().Select(p => p.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))).ToArray();

        // The fresh process knows the network only from this assembly's registration attribute.
        Assert.Equal(expected, Infrastructure.ZipProbe.Run(zip, "7,8,9", "Generated", typeof(TinyConvNoisePredictor).Assembly.Location));
    }

    [Fact]
    public void TheCheckpointNamesTheNetworkKindAndItsSettings()
    {
        var ml = new MLContext(seed: 2);
        using var model = ml.Transforms.TrainDiffusion(Training("Label")).Fit(Squares(ml)).Model;   // class-conditional
        using var stream = new MemoryStream();
        model.Save(stream);
        stream.Position = 0;
        var (header, _) = DiffusionCheckpoint.Read(stream);
        var options = Assert.IsType<TinyConvOptions>(header.Network);
        Assert.Equal(ConditionKind.Class, options.Condition.Kind);
        string json = System.Text.Json.JsonSerializer.Serialize(header, DiffusionCheckpoint.JsonOptions);
        Assert.Contains($"\"Network\":{{\"Type\":\"{TinyConvOptions.Name}\"", json);
        Assert.Contains("\"Width\":8", json);

        stream.Position = 0;
        using var loaded = DiffusionModel.Load(stream, TorchSharp.torch.CPU);
        using var labels = TorchSharp.torch.tensor(new long[] { 0, 1 });
        using var condition = ConditionBatch.Classes(labels);
        using var images = loaded.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 4, GuidanceScale = 2 }, [1, 2], condition: condition);
        Assert.Equal([2L, 1, 8, 8], images.shape);
    }

    [Fact]
    public void AConditionTheNetworkCannotTakeAndAnUnregisteredKindAreClearErrors()
    {
        Assert.Contains("cannot take a Text condition",
            Assert.Throws<ArgumentException>(() => new TinyConvOptions { Condition = new() { Kind = ConditionKind.Text, VocabularySize = 5 } }.Validate()).Message);

        string json = "{\"Type\":\"no-such-network\",\"ImageChannels\":1}";
        var e = Assert.Throws<UnknownNoisePredictorException>(() => System.Text.Json.JsonSerializer.Deserialize<NoisePredictorOptions>(json, DiffusionCheckpoint.JsonOptions));
        Assert.Contains("'no-such-network'", e.Message);
        Assert.Contains(NoisePredictors.UNet, e.Message);
        Assert.Contains(TinyConvOptions.Name, NoisePredictors.Names);

        var notAName = Assert.Throws<System.Text.Json.JsonException>(() => System.Text.Json.JsonSerializer.Deserialize<NoisePredictorOptions>(
            "{\"Type\":7,\"ImageChannels\":1}", DiffusionCheckpoint.JsonOptions));
        Assert.Contains("\"Type\" must be a registered name (a string), not 7", notAName.Message);
    }
}
