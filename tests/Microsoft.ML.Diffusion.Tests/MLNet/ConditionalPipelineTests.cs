using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Xunit;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>Class, text and vector conditions through ML.NET pipelines and saved zips.</summary>
public sealed class ConditionalPipelineTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cond-").FullName;

    public sealed class ShapeRow
    {
        [VectorType(1, 16, 16)]
        public float[] Pixels { get; set; } = [];
        public string Prompt { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public int Seed { get; set; }
    }

    private static ShapeRow[] Rows(int count)
    {
        var pixels = SyntheticShapes.GeneratePixels(count, 16, 3, out var labels);
        return Enumerable.Range(0, count).Select(i => new ShapeRow
        {
            Pixels = pixels[i],
            Label = SyntheticShapes.ClassNames[labels[i]],
            Prompt = labels[i] == 0 ? "a round white disc" : "a white square box",
        }).ToArray();
    }

    private static DiffusionTrainingOptions Options(string condition, int steps)
    {
        var o = MLNetTestData.TinyTraining(steps);
        o.ImageColumnName = "Pixels";
        o.PixelRange = PixelRange.Unit;
        o.ConditionColumnName = condition;
        o.TextWidth = 32;
        o.TextLayers = 1;
        o.MaxTokens = 6;
        return o;
    }

    [Fact]
    public void PromptTextGoesStraightToImagesThroughASavedZip()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows(128));
        // The text stages are fitted with the model and travel in the same zip.
        var pipeline = ml.Transforms.Text.TokenizeIntoWords("Tokens", "Prompt")
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
            .Append(ml.Transforms.TrainDiffusion(Options("Tokens", steps: 30)));
        var model = pipeline.Fit(data);
        var trained = DiffusionTrainingTransformer.FindModel(model);
        Assert.Equal(ConditionKind.Text, trained.NetworkOptions.Condition.Kind);

        // Rows 2k and 2k+1 share a seed and differ only in the prompt.
        var prompts = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new PromptRow
        {
            Prompt = i % 2 == 0 ? "a round white disc" : "a white square box", Seed = i / 2,
        }));
        var textStages = ml.Transforms.Text.TokenizeIntoWords("Tokens", "Prompt").Append(ml.Transforms.Conversion.MapValueToKey("Tokens")).Fit(data);
        var generation = textStages.Append(ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 20, GuidanceScale = 4 },
            OutputKind = GeneratedOutputKind.Pixels,
        }).Fit(textStages.Transform(prompts)));
        string zip = Path.Combine(_folder, "text.zip");
        ml.Model.Save(generation, prompts.Schema, zip);

        var loaded = new MLContext().Model.Load(zip, out _);
        var before = generation.Transform(prompts).GetColumn<VBuffer<float>>("Generated").Select(v => v.DenseValues().ToArray()).ToArray();
        var after = loaded.Transform(prompts).GetColumn<VBuffer<float>>("Generated").Select(v => v.DenseValues().ToArray()).ToArray();
        Assert.Equal(before, after);
        // The prompt reaches the image: the same seed with another prompt gives another image.
        for (int k = 0; k < 4; k++) Assert.NotEqual(before[2 * k], before[2 * k + 1]);
        // (How well a trained model follows prompts is measured in ConditioningTests and the Fashion-MNIST demo.)
    }

    [Fact]
    public void ClassKeysAndFeatureVectorsConditionToo()
    {
        var ml = new MLContext(seed: 2);
        var data = ml.Data.LoadFromEnumerable(Rows(48));
        var byClass = ml.Transforms.Conversion.MapValueToKey("Class", "Label")
            .Append(ml.Transforms.TrainDiffusion(Options("Class", steps: 10))).Fit(data);
        Assert.Equal(2, DiffusionTrainingTransformer.FindModel(byClass).NetworkOptions.Condition.ClassCount);

        var byVector = ml.Transforms.Text.FeaturizeText("Features", "Prompt")
            .Append(ml.Transforms.TrainDiffusion(Options("Features", steps: 10))).Fit(data);
        var condition = DiffusionTrainingTransformer.FindModel(byVector).NetworkOptions.Condition;
        Assert.Equal(ConditionKind.Vector, condition.Kind);
        Assert.True(condition.VectorSize > 0);

        // Generation reads the same columns, made by the same fitted stages.
        var generated = byVector.Append(ml.Transforms.DiffusionGenerate(byVector, "Generated", steps: 3).Fit(byVector.Transform(data))).Transform(data);
        Assert.Equal(48, generated.GetColumn<MLImage>("Generated").Count());
    }

    [Fact]
    public void BadConditionInputIsNamed()
    {
        var ml = new MLContext(seed: 3);
        var data = ml.Data.LoadFromEnumerable(Rows(32));
        var textStages = ml.Transforms.Text.TokenizeIntoWords("Tokens", "Prompt").Append(ml.Transforms.Conversion.MapValueToKey("Tokens"));
        var textModel = textStages.Append(ml.Transforms.TrainDiffusion(Options("Tokens", steps: 2))).Fit(data);
        var fittedText = textStages.Fit(data);
        IDataView Prompts(string prompt) => fittedText.Transform(ml.Data.LoadFromEnumerable([new PromptRow { Prompt = prompt }]));

        IDataView Generate(IDataView input) => ml.Transforms.DiffusionGenerate(textModel, "Generated", steps: 2).Fit(input).Transform(input);
        var empty = Assert.Throws<InvalidOperationException>(() => Generate(Prompts("zebra")).GetColumn<MLImage>("Generated").ToList());
        Assert.Contains("empty prompt", empty.Message);
        var tooLong = Assert.Throws<InvalidOperationException>(() => Generate(Prompts("a white square box a round white disc")).GetColumn<MLImage>("Generated").ToList());
        Assert.Contains("at most 6", tooLong.Message);

        // A prompt for an unconditional model, and no condition for a conditional one.
        var plainOptions = Options("Tokens", steps: 2);
        plainOptions.ConditionColumnName = null;
        var plain = ml.Transforms.TrainDiffusion(plainOptions).Fit(data);
        var prompts = Prompts("a white disc");
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionGenerate(plain, new DiffusionGenerationOptions { ConditionColumnName = "Tokens" }).Fit(prompts));
        Assert.Contains("unconditional", e.Message);
        var missing = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionGenerate(DiffusionTrainingTransformer.FindModel(textModel), new DiffusionGenerationOptions()).Fit(prompts));
        Assert.Contains("set ConditionColumnName", missing.Message);

        // An unknown class, and a class column with another number of classes.
        var classModel = ml.Transforms.Conversion.MapValueToKey("Class", "Label").Append(ml.Transforms.TrainDiffusion(Options("Class", steps: 2))).Fit(data);
        var keys = ml.Transforms.Conversion.MapValueToKey("Class", "Label").Fit(data);
        var unknown = keys.Transform(ml.Data.LoadFromEnumerable([new ShapeRow { Label = "triangle", Pixels = new float[256] }]));
        var unknownError = Assert.Throws<InvalidOperationException>(() => ml.Transforms.DiffusionGenerate(classModel, "Generated", steps: 2).Fit(unknown).Transform(unknown).GetColumn<MLImage>("Generated").ToList());
        Assert.Contains("unknown class", unknownError.Message);
        var threeClasses = ml.Transforms.Conversion.MapValueToKey("Class", "Label").Fit(ml.Data.LoadFromEnumerable(Rows(32).Append(new ShapeRow { Label = "triangle", Pixels = new float[256] })));
        var wrongCount = threeClasses.Transform(data);
        Assert.Contains("trained on a key column of 2 classes", Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.DiffusionGenerate(classModel, "Generated").Fit(wrongCount)).Message);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
