using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.WebGeneration.Tests;

/// <summary>Model zips the app serves in the tests: a tiny trained UNet, and a Stable Diffusion stage over the tiny SD 1.x folder.</summary>
internal static class TinyModels
{
    /// <summary>The tiny SD 1.x pipeline folder of the library's tests (64×64 images: latents 32×32, the VAE halves).</summary>
    public static string StableDiffusionFolder => Path.Combine(AppContext.BaseDirectory, "TestData", "sd1-tiny");

    /// <summary>
    /// A grey <paramref name="size"/>² UNet trained two steps on noise (its images are noise too, but seeded and exact)
    /// over a schedule of <paramref name="scheduleSteps"/>, the most steps a request may take.
    /// </summary>
    public static void Train(string zip, int size, int scheduleSteps)
    {
        var ml = new MLContext(seed: 0);
        var random = new Random(0);
        var rows = Enumerable.Range(0, 16).Select(_ => new Row { Pixels = Enumerable.Range(0, size * size).Select(_ => (float)random.NextDouble()).ToArray() }).ToList();
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Pixels)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 1, size, size);
        var data = ml.Data.LoadFromEnumerable(rows, schema);
        var trained = ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions
        {
            ImageColumnName = nameof(Row.Pixels),
            ImageChannels = 1,
            PixelRange = PixelRange.Unit,
            BaseChannels = 16,
            ChannelMultipliers = [1, 2],
            AttentionResolutions = [],
            Schedule = new() { TrainSteps = scheduleSteps },
            TrainingSteps = 2,
            BatchSize = 8,
            Seed = 0,
        }).Fit(data);
        ml.Model.Save(trained, data.Schema, zip);
    }

    /// <summary>
    /// A zip of a fitted <c>DiffusionGenerate</c> stage with prompt and negative-prompt columns over the tiny SD folder: it
    /// refers to the folder (path and SHA-256 of its files) rather than copying it, as a zip over a real checkpoint does.
    /// </summary>
    public static void StableDiffusionStage(string zip)
    {
        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(new[] { new PromptRow() });
        using var model = StableDiffusionFormat.Load(StableDiffusionFolder, CPU);
        var stage = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
        {
            ConditionColumnName = nameof(PromptRow.Prompt), NegativePromptColumnName = nameof(PromptRow.Negative), SeedColumnName = nameof(PromptRow.Seed),
            Generation = { Steps = 4 },
        }).Fit(data);
        ml.Model.Save(stage, data.Schema, zip);
    }

    private sealed class Row
    {
        public float[] Pixels { get; set; } = [];
    }

    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
        public long Seed { get; set; }
    }
}
