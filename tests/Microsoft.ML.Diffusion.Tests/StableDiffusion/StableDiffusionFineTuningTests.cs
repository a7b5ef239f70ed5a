using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Training;
using Microsoft.ML.Transforms.Image;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// TrainDiffusion with a Stable Diffusion StartFrom (the tiny SD 1.x folder): latents from the frozen autoencoder,
/// caption states from the frozen text encoder, the UNet trained in place, and the result generating, saving and loading
/// as a Stable Diffusion model.
/// </summary>
public sealed class StableDiffusionFineTuningTests : IDisposable
{
    private const int Size = 32;
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd1-tiny");
    private readonly string _temp = Directory.CreateTempSubdirectory("mldiffusion-sdtrain-").FullName;

    public void Dispose()
    {
        if (Directory.Exists(_temp)) Directory.Delete(_temp, true);
    }

    public sealed class CaptionedImage
    {
        [ImageType(Size, Size)]
        public MLImage Image { get; set; } = null!;

        public string Caption { get; set; } = "";
    }

    public sealed class CaptionedPixels
    {
        [VectorType(3, 36, 36)]
        public float[] Pixels { get; set; } = new float[3 * 36 * 36];

        public string Caption { get; set; } = "";
    }

    public sealed class PromptRow
    {
        public string Caption { get; set; } = "";
        public int Seed { get; set; }
    }

    private static readonly string[] Captions = ["a red square", "a blue disc", "a green stripe", "a white cross"];

    // Four simple coloured shapes on grey, one per caption.
    private static CaptionedImage[] Rows() => [.. Captions.Select((caption, i) =>
    {
        var rgba = new byte[Size * Size * 4];
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
            {
                bool inside = i switch
                {
                    0 => x is >= 8 and < 24 && y is >= 8 and < 24,
                    1 => (x - 16) * (x - 16) + (y - 16) * (y - 16) < 80,
                    2 => y is >= 12 and < 20,
                    _ => x is >= 14 and < 18 || y is >= 14 and < 18,
                };
                byte[] colour = !inside ? [128, 128, 128] : i switch { 0 => [220, 30, 30], 1 => [30, 30, 220], 2 => [30, 200, 30], _ => [250, 250, 250] };
                int p = 4 * (y * Size + x);
                (rgba[p], rgba[p + 1], rgba[p + 2], rgba[p + 3]) = (colour[0], colour[1], colour[2], 255);
            }
        return new CaptionedImage { Image = MLImage.CreateFromPixels(Size, Size, MLPixelFormat.Rgba32, rgba), Caption = caption };
    })];

    private static DiffusionModel Load() => StableDiffusionFormat.Load(Folder, CPU);

    private static DiffusionTrainingOptions Options(DiffusionModel start, int steps) => new()
    {
        StartFrom = start, ImageColumnName = "Image", ConditionColumnName = "Caption", TrainingSteps = steps, BatchSize = 4,
        LearningRate = 1e-3, WarmupSteps = 0, LearningRateDecay = LearningRateDecay.Constant, MinSnrGamma = null,
        Seed = 7, ReportEvery = 1, Device = "cpu",
    };

    private static float[] Weights(nn.Module module) => [.. module.parameters().SelectMany(p => p.data<float>().ToArray())];

    [Fact]
    public void TheLossFallsTheUNetAloneChangesAndTheResultGeneratesFromPrompts()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows().Take(2).ToList());
        using var start = Load();
        var unetBefore = Weights(start.Network);
        var vaeBefore = Weights(start.Autoencoder!);
        var textBefore = Weights(start.Prompts!.TextModel);
        var prompts = ml.Data.LoadFromEnumerable(Captions.Take(2).Select((c, i) => new PromptRow { Caption = c, Seed = i }).ToList());
        var generation = new DiffusionGenerationOptions { ConditionColumnName = "Caption", SeedColumnName = "Seed", OutputKind = GeneratedOutputKind.Pixels, Generation = { Sampler = "euler", Steps = 2, GuidanceScale = 3 } };
        var untrainedImages = Pixels(ml.Transforms.DiffusionGenerate(start, generation).Fit(prompts).Transform(prompts));

        var losses = new List<double>();
        var options = Options(start, 30);
        options.BatchSize = 2;
        options.Progress = p => losses.Add(p.Loss);
        using var trained = ml.Transforms.TrainDiffusion(options).Fit(data);

        // One batch (both images) every step: the loss falls by far more than the timesteps' noise.
        Assert.Equal(30, losses.Count);
        double first = losses.Take(10).Average(), last = losses.Skip(20).Average();
        Assert.True(last < 0.6 * first, $"mean loss of the first 10 steps {first:F4}, of the last 10 {last:F4}");

        // The result is the StartFrom, trained in place: a Stable Diffusion model still, whose UNet alone has changed.
        Assert.Same(start, trained.Model);
        Assert.True(start.IsLatent && start.TakesPrompts);
        Assert.Equal(30, start.TrainingSteps);
        Assert.NotEqual(unetBefore, Weights(start.Network));
        Assert.Equal(vaeBefore, Weights(start.Autoencoder!));
        Assert.Equal(textBefore, Weights(start.Prompts!.TextModel));
        Assert.All(start.Autoencoder!.parameters().Concat(start.Prompts!.TextModel.parameters()), p => Assert.True(p.grad is null));
        Assert.All(start.Network.parameters(), p => Assert.True(p.grad is null));   // gradients freed after training
        Assert.False(start.Network.training);
        Assert.False(start.Autoencoder!.training);

        // It generates through the same ML.NET prompt path, taking the caption column it was trained with.
        var generate = ml.Transforms.DiffusionGenerate(trained, generation with { ConditionColumnName = null });
        var images = Pixels(generate.Fit(prompts).Transform(prompts));
        Assert.Equal(2, images.Length);
        Assert.Equal(3 * 64 * 64, images[0].Length);   // the model's own size: the UNet's 32 latents × the VAE's 2
        Assert.All(images, image => Assert.All(image, v => Assert.True(float.IsFinite(v))));
        Assert.NotEqual(untrainedImages[0], images[0]);
    }

    [Fact]
    public void ALoraRunTrainsAdaptersOnTheFrozenUNetWritesThemAndUnfusesToTheFilesWeights()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows().Take(2).ToList());
        using var start = Load();
        var unetBefore = Weights(start.Network);
        var options = Options(start, 20);
        options.BatchSize = 2;
        options.EmaDecay = 0;
        options.Lora = new LoraTrainingOptions { Rank = 2 };
        var trained = ml.Transforms.TrainDiffusion(options).Fit(data);

        // The adapters are fused into the start model, whose file reference stays (the files still hold its base).
        Assert.Same(start, trained.Model);
        Assert.NotNull(trained.Lora);
        Assert.True(trained.Lora!.UNetLayers > 0);
        Assert.NotEqual(unetBefore, Weights(start.Network));
        Assert.All(start.Network.parameters(), p => Assert.True(p.requires_grad));   // unfrozen again

        // The written adapter loads into a fresh copy of the base and gives the trained model's weights.
        string file = trained.Lora.Save(Path.Combine(_temp, "style"));   // no extension: read by its content
        using (var other = Load())
        using (other.LoadLora(file))
        {
            var fused = Weights(other.Network);
            var ours = Weights(start.Network);
            Assert.Equal(ours.Length, fused.Length);
            Assert.True(ours.Zip(fused).Max(p => Math.Abs(p.First - p.Second)) < 1e-5f);
        }

        trained.Dispose();   // unfuses: the base weights come back exactly
        Assert.Equal(unetBefore, Weights(start.Network));
    }

    [Fact]
    public void TheTrainingStepMatchesDiffusers()
    {
        var reference = SafeTensors.Read(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "training", "training.safetensors")), "training.safetensors");
        try
        {
            using var model = Load();
            using var scope = NewDisposeScope();
            using (var data = new LatentTrainingSet(model, CPU, sampleLatents: false, seed: 0))
                AssertClose(reference["latents_mean"], data.Encode(reference["pixels"], "the reference images"), "latents (mean)");
            using (var distribution = model.Autoencoder!.Encode(reference["pixels"]))
                AssertClose(reference["latents_sample"], distribution.Sample(reference["sample_noise"]) * model.Autoencoder.ScalingFactor, "latents (sample)");

            var latents = reference["latents_mean"];
            var t = reference["timesteps"];
            var noise = reference["noise"];
            using var prompts = ConditionBatch.PromptStates(reference["prompt_embeds"]);
            using (var trainer = new DiffusionTrainer(model.Network, model.ScheduleOptions, new DiffusionTrainerOptions { EmaDecay = 0, Prediction = PredictionType.VPrediction }, CPU))
            {
                var (noisyV, velocity) = trainer.NoisyAndTarget(latents, t, noise);
                AssertClose(reference["velocity"], velocity, "v target");
                using (no_grad())
                    Assert.Equal((double)reference["loss_v"].item<float>(), (double)trainer.Loss(noisyV, t, velocity, prompts).item<float>(), 1e-4);
            }
            using var epsilon = new DiffusionTrainer(model.Network, model.ScheduleOptions, new DiffusionTrainerOptions { EmaDecay = 0 }, CPU);
            var (noisy, target) = epsilon.NoisyAndTarget(latents, t, noise);
            AssertClose(reference["noisy"], noisy, "noisy latents");
            AssertClose(noise, target, "ε target");
            model.Network.train();
            var loss = epsilon.Loss(noisy, t, target, prompts);
            Assert.Equal((double)reference["loss"].item<float>(), (double)loss.item<float>(), 1e-4);
            loss.backward();
            var parameters = model.Network.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            AssertClose(reference["grad_conv_in"], parameters["unet.conv_in.weight"].grad!, "conv_in's gradient");
            AssertClose(reference["grad_attn2_to_k"], parameters["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"].grad!, "attn2.to_k's gradient");
            model.Network.zero_grad();
        }
        finally
        {
            foreach (var tensor in reference.Values) tensor.Dispose();
        }
    }

    // Within 1e-4 of the reference's range.
    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        double range = Math.Max(expected.abs().max().item<float>(), 1e-12);
        double worst = (expected.to_type(float32) - actual.detach().to_type(float32)).abs().max().item<float>();
        Assert.True(worst <= 1e-4 * range, $"{what}: largest difference {worst:E3}, {worst / range:E3} of the reference's range {range:E3}");
    }

    [Fact]
    public void SeededRunsGiveTheSameWeights()
    {
        float[] Run(bool ema)
        {
            var ml = new MLContext(seed: 1);
            using var start = Load();
            var options = Options(start, 3);
            options.BatchSize = 2;
            options.CaptionDropout = 0.5;
            options.UseEma = ema;
            options.EmaDecay = 0.5;
            using var trained = ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(Rows()));
            return Weights(trained.Model.Network);
        }
        var first = Run(ema: false);
        Assert.Equal(first, Run(ema: false));
        // With an average kept, the UNet ends holding it: other weights than the raw ones.
        Assert.NotEqual(first, Run(ema: true));
    }

    [Fact]
    public void StreamedDataIsEncodedPerBatchAndTrains()
    {
        var ml = new MLContext(seed: 1);
        using var start = Load();
        var before = Weights(start.Network);
        var options = Options(start, 3);
        options.DataLoading = TrainingDataLoading.Streaming;
        options.BatchSize = 2;
        var losses = new List<double>();
        options.Progress = p => losses.Add(p.Loss);
        using var trained = ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(Rows()));
        Assert.Equal(3, losses.Count);
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        Assert.NotEqual(before, Weights(start.Network));
    }

    [Fact]
    public void AFineTunedModelIsSavedAsADiffusersFolderWhichZipsThenReferTo()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows());
        using var start = Load();
        using var trained = ml.Transforms.TrainDiffusion(Options(start, 3)).Fit(data);
        string zip = Path.Combine(_temp, "tuned.zip");

        // The zip would refer to the unchanged source folder: refused, naming the way out.
        var refused = Assert.ThrowsAny<Exception>(() => ml.Model.Save(trained, data.Schema, zip)).GetBaseException();
        Assert.IsType<NotSupportedException>(refused);
        Assert.Contains("was fine-tuned from", refused.Message);
        Assert.Contains("SaveDiffusers(folder)", refused.Message);
        Assert.Throws<NotSupportedException>(() => start.Save(new MemoryStream()));

        string folder = Path.Combine(_temp, "tuned");
        trained.Model.SaveDiffusers(folder);
        ml.Model.Save(trained, data.Schema, zip);
        Assert.True(new FileInfo(zip).Length < 100_000, "the zip refers to the written folder instead of copying it");

        // The folder holds the trained UNet and the unchanged autoencoder and text encoder.
        using (var reloaded = StableDiffusionFormat.Load(folder, CPU))
        {
            Assert.Equal(Weights(start.Network), Weights(reloaded.Network));
            Assert.Equal(Weights(start.Autoencoder!), Weights(reloaded.Autoencoder!));
            Assert.Equal(Weights(start.Prompts!.TextModel), Weights(reloaded.Prompts!.TextModel));
            Assert.Equal(start.ScheduleOptions, reloaded.ScheduleOptions);
            Assert.Equal(start.Prediction, reloaded.Prediction);
            Assert.Equal(start.DiffusersScheduler, reloaded.DiffusersScheduler);
        }

        // The zip loads and generates as the model in memory does.
        var prompts = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Caption = "a red square", Seed = 3 } });
        var generation = new DiffusionGenerationOptions { SeedColumnName = "Seed", OutputKind = GeneratedOutputKind.Pixels, Generation = { Sampler = "euler", Steps = 2 } };
        var expected = Pixels(ml.Transforms.DiffusionGenerate(trained, generation).Fit(prompts).Transform(prompts));
        var loaded = ml.Model.Load(zip, out _);
        try
        {
            Assert.Equal(expected, Pixels(ml.Transforms.DiffusionGenerate(loaded, generation).Fit(prompts).Transform(prompts)));
        }
        finally
        {
            ((IDisposable)loaded).Dispose();
        }
    }

    [Fact]
    public void ZeroStepsLeaveTheModelAsLoadedAndZipsReferToItsFiles()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows());
        using var start = Load();
        var before = Weights(start.Network);
        using var trained = ml.Transforms.TrainDiffusion(Options(start, 0)).Fit(data);
        Assert.Same(start, trained.Model);
        Assert.Equal(before, Weights(start.Network));
        Assert.NotNull(start.Source);
        ml.Model.Save(trained, data.Schema, Path.Combine(_temp, "unchanged.zip"));
    }

    [Fact]
    public void AResumedRunEndsWithTheWeightsOfAnUninterruptedOne()
    {
        float[] Run(int steps, string? checkpoint)
        {
            var ml = new MLContext(seed: 1);
            using var start = Load();
            var options = Options(start, steps);
            options.BatchSize = 3;   // 4 rows: epochs end mid-batch, so the saved order matters
            options.CaptionDropout = 0.5;
            options.CheckpointPath = checkpoint;
            options.DecaySteps = 3;   // the resumed run's settings must be the interrupted one's
            using var trained = ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(Rows()));
            return Weights(start.Network);
        }
        var straight = Run(3, null);
        string state = Path.Combine(_temp, "state.ckpt");
        Run(1, state);
        Assert.Equal(straight, Run(3, state));   // a fresh model: the checkpoint's weights, order and generator take over
    }

    [Fact]
    public void AModelFromASingleFileIsWrittenAsAFolderWithItsTokenizer()
    {
        string single = Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "single-file", "sd1-tiny.ckpt");
        string tokenizer = Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "tokenizer", "tokenizer-small");
        // The tiny networks' choices, as SingleFileLoadTests gives them (the file's shapes leave them open).
        var parts = Microsoft.ML.Diffusion.Interchange.SingleFile.StableDiffusionSingleFile.Load(single, tokenizer, null,
            new Microsoft.ML.Diffusion.Interchange.SingleFile.LdmArchitectureChoices(NormGroups: 2, StableDiffusion1Heads: 2, StableDiffusion2HeadChannels: 4, TextHeadWidth: 8));
        using var model = StableDiffusionModels.Build(parts, CPU, new ModelSource(ModelSource.SingleFile, single, tokenizer));
        string folder = Path.Combine(_temp, "from-single-file");
        model.SaveDiffusers(folder);
        using var reloaded = StableDiffusionFormat.Load(folder, CPU);
        Assert.Equal(Weights(model.Network), Weights(reloaded.Network));
        Assert.Equal(Weights(model.Autoencoder!), Weights(reloaded.Autoencoder!));
        Assert.Equal(Weights(model.Prompts!.TextModel), Weights(reloaded.Prompts!.TextModel));
        Assert.Equal(model.Prompts.Tokenizer.Encode("a red square").Ids, reloaded.Prompts!.Tokenizer.Encode("a red square").Ids);
        Assert.Equal(model.ScheduleOptions, reloaded.ScheduleOptions);
        Assert.Equal(model.DiffusersScheduler, reloaded.DiffusersScheduler);   // samples with the same scheduler (PNDM)
    }

    [Fact]
    public void BadCaptionsImagesAndOptionsAreRefusedByName()
    {
        var ml = new MLContext(seed: 1);
        using var start = Load();
        var data = ml.Data.LoadFromEnumerable(Rows());
        var before = Weights(start.Network);

        var none = Options(start, 1);
        none.ConditionColumnName = null;
        Assert.Contains("set ConditionColumnName to the text column", Assert.Throws<ArgumentException>(() => ml.Transforms.TrainDiffusion(none).Fit(data)).Message);

        var missing = Options(start, 1);
        missing.ConditionColumnName = "Text";
        Assert.Contains("Caption column 'Text' was not found", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.TrainDiffusion(missing).Fit(data)).Message);

        var keys = ml.Transforms.Conversion.MapValueToKey("Caption").Fit(data).Transform(data);
        Assert.Contains("must hold text", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.TrainDiffusion(Options(start, 1)).Fit(keys)).Message);

        var classes = Options(start, 1);
        classes.ClassCount = 4;
        var mixed = Assert.Throws<ArgumentException>(() => ml.Transforms.TrainDiffusion(classes).Fit(data));
        Assert.Contains("ClassCount configures the library's own pixel-space networks", mixed.Message);
        var network = Options(start, 1);
        network.Network = new Microsoft.ML.Diffusion.Networks.UNetOptions();
        network.TextLayers = 3;
        Assert.Contains("Network, TextLayers configure", Assert.Throws<ArgumentException>(() => ml.Transforms.TrainDiffusion(network).Fit(data)).Message);
        var flip = Options(start, 1);
        flip.RandomHorizontalFlip = true;
        Assert.Contains("RandomHorizontalFlip", Assert.Throws<ArgumentException>(() => ml.Transforms.TrainDiffusion(flip).Fit(data)).Message);

        // 36 × 36: a multiple of the tiny VAE's factor 2, not of 8.
        var odd = ml.Data.LoadFromEnumerable(new[] { new CaptionedPixels { Caption = "grey" } });
        var size = Options(start, 1);
        size.ImageColumnName = "Pixels";
        Assert.Contains("multiples of 8", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.TrainDiffusion(size).Fit(odd)).Message);

        // Nothing above touched the model.
        Assert.Equal(before, Weights(start.Network));
        Assert.NotNull(start.Source);
    }

    [Theory]
    [InlineData(1.0)]   // clipping reads the gradients' norm every step
    [InlineData(0.0)]   // without it, the reported loss shows the divergence
    public void ANaNLossStopsTrainingWithAClearMessage(double clip)
    {
        var ml = new MLContext(seed: 1);
        using var start = Load();
        using (no_grad()) start.Network.parameters().First().fill_(float.NaN);
        var options = Options(start, 3);
        options.GradientClipNorm = clip;
        var error = Assert.Throws<InvalidOperationException>(() => ml.Transforms.TrainDiffusion(options).Fit(ml.Data.LoadFromEnumerable(Rows())));
        Assert.Contains("Training diverged", error.Message);
    }

    private static float[][] Pixels(IDataView view)
    {
        var rows = new List<float[]>();
        var column = view.Schema["GeneratedImage"];
        using var cursor = view.GetRowCursor([column]);
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            rows.Add(buffer.DenseValues().ToArray());
        }
        return [.. rows];
    }
}
