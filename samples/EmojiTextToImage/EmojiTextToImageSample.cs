using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Transforms;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML.Transforms.Text;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The sample's steps, callable from tests with a small step count and network.</summary>
public static class EmojiTextToImageSample
{
    public const int DefaultSteps = 2400;   // about 20 minutes on 2 CPU cores
    public const int ImageSize = 32;        // the 64×64 PNGs are resized to this
    public const int DefaultSeedsPerPrompt = 4;
    public const int DefaultSamplerSteps = 20;
    private const int GridScale = 2;

    /// <summary>Guidance scales with a grid each: 3 follows the prompt closely, 1 samples the model as trained.</summary>
    public static IReadOnlyList<double> GuidanceScales { get; } = [3, 1];

    /// <summary>
    /// The emoji the sample draws, by their names in emoji.json. These are Unicode character names, so
    /// some differ from the usual ones: ❤️ is "heavy black heart" and ☀️ "black sun with rays".
    /// </summary>
    public static IReadOnlyList<string> DefaultPrompts { get; } =
    [
        "grinning face", "face with tears of joy", "smiling face with sunglasses", "heavy black heart",
        "thumbs up sign", "dog face", "cat face", "frog face",
        "penguin", "red apple", "slice of pizza", "rocket",
        "black sun with rays", "snowflake", "fire", "rainbow",
    ];

    /// <summary>What the sample wrote.</summary>
    public sealed record Result(
        string OutputFolder, string ModelZip, string PromptsFile, string RealGrid, IReadOnlyList<string> GeneratedGrids,
        int TrainingImages, int Prompts, int SeedsPerPrompt, long TrainedSteps);

    /// <summary>Trains a text-conditioned model on the emoji and writes grids of what it draws for <see cref="DefaultPrompts"/>.</summary>
    /// <param name="outputFolder">Where the model zip, the grids and prompts.txt go.</param>
    /// <param name="steps">Training steps.</param>
    /// <param name="log">Progress messages.</param>
    /// <param name="maxImages">Train on at most this many emoji (the prompts' emoji always among them); null uses all.</param>
    /// <param name="configure">Changes to the training options (tests use it for a tiny network).</param>
    /// <param name="seedsPerPrompt">Images per prompt and guidance scale: the columns of each grid.</param>
    /// <param name="samplerSteps">DPM-Solver++ steps per image.</param>
    public static Result Run(string outputFolder, int steps, Action<string> log, int? maxImages = null,
        Action<DiffusionTrainingOptions>? configure = null, int seedsPerPrompt = DefaultSeedsPerPrompt, int samplerSteps = DefaultSamplerSteps)
    {
        ArgumentNullException.ThrowIfNull(log);
        if (!EmojiDataset.IsAvailable(out string reason))
            throw new FileNotFoundException(reason);
        Directory.CreateDirectory(outputFolder);
        var clock = Stopwatch.StartNew();

        // 1. Text/image pairs: the image file of each emoji and a caption such as "grinning face smiling".
        var ml = new MLContext(seed: 1);
        var data = EmojiDataset.LoadDataView(ml, maxItems: maxImages, include: DefaultPrompts);
        var rows = ml.Data.CreateEnumerable<EmojiRow>(data, reuseRowObject: false).ToList();
        log($"Loaded {rows.Count} emoji from {EmojiDataset.ResolveDirectory()}, e.g. \"{rows[0].Caption}\"");

        // 2. Train: ML.NET loads and resizes the images and turns each caption into word keys.
        var options = new DiffusionTrainingOptions
        {
            ImageColumnName = "Image",
            ImageChannels = 3,                  // transparency is composited over white
            ImageSize = ImageSize,
            ConditionColumnName = "Tokens",     // a vector of keys: a text prompt, read through cross-attention
            MaxTokens = EmojiDataset.DefaultMaxTokens,
            BaseChannels = 32,
            ChannelMultipliers = [1, 2, 2],
            AttentionResolutions = [8],
            TrainingSteps = steps,
            BatchSize = 32,
            LearningRate = 5e-4,
            WarmupSteps = Math.Min(200, steps / 4),
            EmaDecay = 0.998,
            // Off: a mirrored emoji contradicts its caption ("leftwards arrow", flags, letters and digits).
            RandomHorizontalFlip = false,
            Seed = 1,
            ReportEvery = Math.Max(1, steps / 20),
            CheckpointPath = Path.Combine(outputFolder, "training-state.zip"),   // a longer run resumes from it
            Progress = p => log($"  step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}, {p.StepsPerSecond:F2} steps/s"),
        };
        configure?.Invoke(options);
        if (options.CheckpointPath is { } state && File.Exists(state))
            log($"Resuming from {state} (delete it to train afresh)");
        var training = ml.Transforms.LoadImages("Image", imageFolder: null, nameof(EmojiRow.ImagePath))
            .Append(ml.Transforms.ResizeImages("Image", ImageSize, ImageSize))
            .Append(ml.Transforms.Text.TokenizeIntoWords("Tokens", nameof(EmojiRow.Caption)))
            .Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
            .Append(ml.Transforms.TrainDiffusion(options));
        var trained = training.Fit(data);
        string modelZip = Path.Combine(outputFolder, "emoji-model.zip");
        ml.Model.SaveAtomically(trained, data.Schema, modelZip);
        log($"Trained {options.TrainingSteps} steps in {clock.Elapsed.TotalSeconds:F0} s; saved {modelZip}");

        // 3. A fresh context loads the zip. Its text stages (tokenizer and vocabulary) turn prompts into
        //    the keys the model was trained on; the image stages are not needed to generate.
        var app = new MLContext(seed: 2);
        var loaded = app.Model.Load(modelZip, out _);
        var textStages = new TransformerChain<ITransformer>(((TransformerChain<ITransformer>)loaded)
            .Where(stage => stage is WordTokenizingTransformer or ValueToKeyMappingTransformer).ToArray());

        // Each prompt is the caption of the emoji with that name, so its words are all in the vocabulary.
        var prompted = DefaultPrompts.Select(p => rows.First(r => EmojiDataset.NormalizeText(r.Name) == EmojiDataset.NormalizeText(p))).ToList();
        var promptRows = prompted.SelectMany(r => Enumerable.Range(0, seedsPerPrompt).Select(s => new PromptRow { Caption = r.Caption, Seed = 1000 + s })).ToList();
        var prompts = textStages.Transform(app.Data.LoadFromEnumerable(promptRows));

        // 4. One grid per guidance scale: a row per prompt, a column per seed (the same seeds in every grid).
        var grids = new List<string>();
        foreach (double guidance in GuidanceScales)
        {
            var generate = app.Transforms.DiffusionGenerate(loaded, new DiffusionGenerationOptions
            {
                OutputColumnName = "Generated", SeedColumnName = nameof(PromptRow.Seed),
                Generation = { Sampler = SamplerName.DpmSolverPlusPlus, Steps = samplerSteps, GuidanceScale = guidance },
                OutputKind = GeneratedOutputKind.Pixels,   // 3×32×32, 0–255, as ExtractPixels would give
            }).Fit(prompts);
            var pixels = Column(generate.Transform(prompts), "Generated");
            string grid = Path.Combine(outputFolder, $"generated-guidance-{guidance.ToString("0.#", CultureInfo.InvariantCulture)}.png");
            PixelRows.SaveGrid(pixels, 3, ImageSize, ImageSize, grid, seedsPerPrompt, GridScale);
            grids.Add(grid);
            log($"Guidance {guidance}: {grid}");
        }

        // 5. The real emoji for the same prompts, as the model saw them (32×32, over white), one per row.
        string realGrid = Path.Combine(outputFolder, "real.png");
        var real = app.Data.LoadFromEnumerable(prompted);
        var preview = app.Transforms.LoadImages("Image", imageFolder: null, nameof(EmojiRow.ImagePath))
            .Append(app.Transforms.ResizeImages("Image", ImageSize, ImageSize))
            .Append(app.Transforms.ExtractPixels("Pixels", "Image", ImagePixelExtractingEstimator.ColorBits.All));   // planes A, R, G, B
        PixelRows.SaveGrid(Column(preview.Fit(real).Transform(real), "Pixels").Select(OverWhite).ToArray(), 3, ImageSize, ImageSize, realGrid, 1, GridScale);

        string promptsFile = Path.Combine(outputFolder, "prompts.txt");
        File.WriteAllText(promptsFile, Describe(prompted, seedsPerPrompt, samplerSteps, options.TrainingSteps, rows.Count));
        log($"Real emoji: {realGrid}; prompts: {promptsFile} ({clock.Elapsed.TotalSeconds:F0} s in all)");

        return new Result(outputFolder, modelZip, promptsFile, realGrid, grids, rows.Count, prompted.Count, seedsPerPrompt,
            DiffusionTrainingTransformer.FindModel(loaded).TrainingSteps);
    }

    private static string Describe(IReadOnlyList<EmojiRow> prompted, int seeds, int samplerSteps, int steps, int images)
    {
        var text = new StringBuilder();
        text.AppendLine($"# {images} emoji, {steps} training steps; DPM-Solver++ with {samplerSteps} steps.");
        text.AppendLine($"# Row i of real.png and of each generated-guidance-*.png is prompt i; generated grids have one column per seed ({string.Join(", ", Enumerable.Range(0, seeds).Select(s => 1000 + s))}).");
        text.AppendLine("# row\tprompt\temoji name\tshort name");
        for (int i = 0; i < prompted.Count; i++)
            text.AppendLine($"{i}\t{prompted[i].Caption}\t{prompted[i].Name}\t{prompted[i].ShortName}");
        return text.ToString();
    }

    // ExtractPixels' A, R, G, B planes (0–255) → R, G, B composited over white, as TrainDiffusion does.
    private static float[] OverWhite(float[] argb)
    {
        int plane = argb.Length / 4;
        var rgb = new float[3 * plane];
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < plane; i++)
            {
                float alpha = argb[i] / 255f;
                rgb[c * plane + i] = argb[(c + 1) * plane + i] * alpha + 255f * (1 - alpha);
            }
        return rgb;
    }

    private static float[][] Column(IDataView view, string column)
        => view.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    private sealed class PromptRow
    {
        public string Caption { get; set; } = "";
        public int Seed { get; set; }
    }
}
