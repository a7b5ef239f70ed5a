using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Transforms.Image;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// The pipeline users write: load and resize images, train, save the zip, load it in a new MLContext,
/// generate. Trained once for the class (a few seconds) and shared by its tests.
/// </summary>
public sealed class PipelineRoundTripTests : IClassFixture<PipelineRoundTripTests.TrainedPipeline>
{
    private readonly TrainedPipeline _trained;
    private readonly ITestOutputHelper _output;

    public PipelineRoundTripTests(TrainedPipeline trained, ITestOutputHelper output)
    {
        _trained = trained;
        _output = output;
    }

    public sealed class TrainedPipeline : IDisposable
    {
        public string Folder { get; } = Directory.CreateTempSubdirectory("mldiffusion-mlnet-").FullName;
        public ITransformer Model { get; }
        public IDataView Data { get; }
        public string ZipPath { get; }
        public List<string> Log { get; } = new();
        public List<Diffusion.Training.TrainingProgress> Progress { get; } = new();

        public TrainedPipeline()
        {
            var ml = new MLContext(seed: 1);
            ml.Log += (_, e) => { if (e.Message.Contains("Step ", StringComparison.Ordinal)) lock (Log) Log.Add(e.Message); };
            var paths = MLNetTestData.WriteShapeImages(Path.Combine(Folder, "images"));
            Data = ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { Path = Path.GetFileName(p) }));
            var options = MLNetTestData.TinyTraining();
            options.Progress = Progress.Add;
            var pipeline = ml.Transforms.LoadImages("Image", Path.Combine(Folder, "images"), nameof(ImagePathRow.Path))
                .Append(ml.Transforms.ResizeImages("Image", 16, 16))
                .Append(ml.Transforms.TrainDiffusion(options));
            Model = pipeline.Fit(Data);
            ZipPath = Path.Combine(Folder, "diffusion.zip");
            ml.Model.Save(Model, Data.Schema, ZipPath);
        }

        public void Dispose() => Directory.Delete(Folder, recursive: true);
    }

    private static IDataView Seeds(MLContext ml, int count, int offset = 100)
        => ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => new SeedRow { Seed = offset + i }));

    private static float[][] Pixels(IDataView view, string column)
        => view.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    [Fact]
    public void TrainingReportsProgressThroughMLContextLogAndTheCallback()
    {
        Assert.Equal([10, 20, 30], _trained.Progress.Select(p => p.Step));
        Assert.All(_trained.Progress, p => Assert.True(double.IsFinite(p.Loss) && p.StepsPerSecond > 0));
        // The default cosine decay: the rate falls from its peak to 0 at the last step.
        Assert.Equal([false, false, true], _trained.Progress.Select(p => p.LearningRate == 0));
        Assert.True(_trained.Progress[0].LearningRate > _trained.Progress[1].LearningRate);
        Assert.Contains(_trained.Log, m => m.Contains("Step 30/30") && m.Contains("loss") && m.Contains("steps/s"));
        Assert.Equal(30, DiffusionTrainingTransformer.FindModel(_trained.Model).TrainingSteps);
    }

    [Fact]
    public void SavedZipLoadsInANewContextAndGeneratesBitIdenticalImages()
    {
        var ml = new MLContext(seed: 2);
        var seeds = Seeds(ml, 5);
        var options = new DiffusionGenerationOptions { OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 8 }, OutputKind = GeneratedOutputKind.Pixels, BatchSize = 2 };

        var original = ml.Transforms.DiffusionGenerate(_trained.Model, options).Fit(seeds).Transform(seeds);
        var loadedContext = new MLContext();
        var loaded = loadedContext.Model.Load(_trained.ZipPath, out var schema);
        Assert.NotNull(schema.GetColumnOrNull("Path"));
        var regenerated = loadedContext.Transforms.DiffusionGenerate(loaded, options).Fit(seeds).Transform(seeds);

        var a = Pixels(original, "Generated");
        var b = Pixels(regenerated, "Generated");
        Assert.Equal(5, a.Length);
        Assert.Equal(a, b);
        Assert.All(a, image => Assert.Equal(16 * 16, image.Length));
        Assert.All(a.SelectMany(x => x), v => Assert.InRange(v, 0f, 255f));
        Assert.NotEqual(a[0], a[1]);
    }

    [Fact]
    public void GenerationChainWithOtherStagesRoundTripsThroughOneZip()
    {
        var ml = new MLContext(seed: 3);
        var seeds = Seeds(ml, 4);
        var chain = ml.Transforms.DiffusionGenerate(_trained.Model, "Generated", seedColumnName: "Seed", sampler: SamplerName.DpmSolverPlusPlus, steps: 6)
            .Append(ml.Transforms.ConvertToGrayscale("Grey", "Generated"))
            .Append(ml.Transforms.ResizeImages("Small", 8, 8, "Grey"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Small"))
            .Fit(seeds);
        string zip = Path.Combine(_trained.Folder, "generate-chain.zip");
        ml.Model.Save(chain, seeds.Schema, zip);

        var before = Pixels(chain.Transform(seeds), "Pixels");
        var other = new MLContext();
        var loaded = other.Model.Load(zip, out _);
        var after = Pixels(loaded.Transform(seeds), "Pixels");
        Assert.Equal(before, after);
        Assert.All(before, p => Assert.Equal(3 * 8 * 8, p.Length));

        // The generated column is a real image column: ML.NET's own stages read it, and its type says 16×16.
        var type = Assert.IsType<ImageDataViewType>(loaded.GetOutputSchema(seeds.Schema)["Generated"].Type);
        Assert.Equal((16, 16), (type.Height, type.Width));
    }

    [Fact]
    public void AFreshProcessLoadsTheZipAndGeneratesTheSameImages()
    {
        var ml = new MLContext(seed: 5);
        var seeds = Seeds(ml, 3, offset: 40);
        var chain = ml.Transforms.DiffusionGenerate(_trained.Model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddpm, Steps = 10 }, OutputKind = GeneratedOutputKind.Pixels,
        }).Fit(seeds);
        string zip = Path.Combine(_trained.Folder, "fresh-process.zip");
        ml.Model.Save(chain, seeds.Schema, zip);
        var expected = Pixels(chain.Transform(seeds), "Generated")
            .Select(row => string.Join(",", row.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))).ToArray();

        Assert.Equal(expected, Infrastructure.ZipProbe.Run(zip, "40,41,42", "Generated"));
    }

    [Fact]
    public void BatchesAndSingleRequestsGiveTheSameImagePerSeed()
    {
        var ml = new MLContext(seed: 4);
        var seeds = Seeds(ml, 5, offset: 7);
        var options = new DiffusionGenerationOptions { OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 5 }, OutputKind = GeneratedOutputKind.Pixels };
        var transformer = ml.Transforms.DiffusionGenerate(_trained.Model, options).Fit(seeds);

        var inBatchesOfTwo = Pixels(ml.Transforms.DiffusionGenerate(_trained.Model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated", SeedColumnName = "Seed", Generation = { Sampler = SamplerName.Ddim, Steps = 5 }, OutputKind = GeneratedOutputKind.Pixels, BatchSize = 2,
        }).Fit(seeds).Transform(seeds), "Generated");
        var inOneBatch = Pixels(transformer.Transform(seeds), "Generated");

        var engine = ml.Model.CreatePredictionEngine<SeedRow, GeneratedPixels>(transformer);
        var single = engine.Predict(new SeedRow { Seed = 9 }).Generated;

        for (int i = 0; i < 5; i++)
            for (int j = 0; j < inOneBatch[i].Length; j++)
                Assert.True(Math.Abs(inOneBatch[i][j] - inBatchesOfTwo[i][j]) < 0.05, $"row {i} pixel {j}");   // batch composition changes only float rounding
        Assert.Equal(inOneBatch[2].Length, single.Length);
        for (int j = 0; j < single.Length; j++) Assert.True(Math.Abs(inOneBatch[2][j] - single[j]) < 0.05, $"pixel {j}");   // seed 9 is row 2

        engine.Dispose();   // owns the generation transformer, but not the trained model it shares
        Assert.Equal(inOneBatch, Pixels(ml.Transforms.DiffusionGenerate(_trained.Model, options).Fit(seeds).Transform(seeds), "Generated"));
    }

    [Fact]
    public void ChangingOptionsAfterBuildingTheEstimatorDoesNotChangeIt()
    {
        var ml = new MLContext();
        var options = MLNetTestData.TinyTraining(steps: 3);
        var estimator = ml.Transforms.TrainDiffusion(options);
        options.TrainingSteps = 1000;
        options.ImageColumnName = "Nope";
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 4).Select(_ => new PixelRow()));
        var model = estimator.Fit(data);   // would fail on "Nope" or train 1000 steps if the options were shared
        Assert.Equal(3, DiffusionTrainingTransformer.FindModel(model).TrainingSteps);
    }

    public sealed class PixelRow
    {
        [VectorType(1, 16, 16)]
        public float[] Image { get; set; } = new float[256];
    }

    [Fact]
    public void WithoutASeedColumnRowsAreSeededByPosition()
    {
        var ml = new MLContext();
        var rows = Seeds(ml, 3);
        var options = new DiffusionGenerationOptions { OutputColumnName = "Generated", Seed = 100, Generation = { Sampler = SamplerName.Ddim, Steps = 4 }, OutputKind = GeneratedOutputKind.Pixels };
        var byPosition = Pixels(ml.Transforms.DiffusionGenerate(_trained.Model, options).Fit(rows).Transform(rows), "Generated");
        options.SeedColumnName = "Seed";   // seeds 100, 101, 102: the same as Seed + position
        var bySeed = Pixels(ml.Transforms.DiffusionGenerate(_trained.Model, options).Fit(rows).Transform(rows), "Generated");
        Assert.Equal(byPosition, bySeed);
    }

    public sealed class GeneratedPixels
    {
        [VectorType(16 * 16)]
        public float[] Generated { get; set; } = [];
    }
}
