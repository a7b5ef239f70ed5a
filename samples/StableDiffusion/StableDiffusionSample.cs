using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The sample's settings; the defaults are the real run, tests shrink them.</summary>
public sealed class StableDiffusionOptions
{
    /// <summary>What the sample draws when no prompt is given.</summary>
    public static readonly string[] DefaultPrompts =
    [
        "a photograph of an astronaut riding a horse on the moon",
        "a watercolour painting of a lighthouse on a cliff at dawn",
        "a bowl of ramen on a wooden table, studio lighting, highly detailed",
    ];

    /// <summary>One image per prompt.</summary>
    public IReadOnlyList<string> Prompts { get; set; } = DefaultPrompts;

    /// <summary>What every image steers away from; null for none.</summary>
    public string? NegativePrompt { get; set; } = "blurry, low quality, deformed";

    /// <summary>Sampler steps.</summary>
    public int Steps { get; set; } = 25;

    /// <summary>Classifier-free guidance scale.</summary>
    public double Guidance { get; set; } = 7.5;

    /// <summary>Image width in pixels (a multiple of 8); null draws at the model's own size (512 for SD 1.x, 768 for SD 2.x).</summary>
    public int? Width { get; set; }

    /// <summary>Image height in pixels (a multiple of 8); null draws at the model's own size.</summary>
    public int? Height { get; set; }

    /// <summary>Seed of the first prompt's image; prompt i uses Seed + i.</summary>
    public long Seed { get; set; } = 42;

    /// <summary>Width of the thumbnails ResizeImages makes; their height keeps the images' aspect ratio.</summary>
    public int ThumbnailWidth { get; set; } = 128;

    /// <summary>For a single checkpoint file: the tokenizer/ folder of a diffusers Stable Diffusion model of the same version.</summary>
    public string? TokenizerFolder { get; set; }
}

/// <summary>
/// Stable Diffusion in an ML.NET pipeline: prompt rows → DiffusionGenerate (an image column) → ResizeImages (thumbnails),
/// each image written as a PNG, and the fitted pipeline saved as a model zip that refers to the model's files.
/// </summary>
public static class StableDiffusionSample
{
    /// <summary>One prompt's image.</summary>
    public sealed record Image(string Prompt, long Seed, string Path, string Thumbnail, double Seconds);

    /// <summary>What the sample wrote.</summary>
    public sealed record Result(string OutputFolder, int Width, int Height, IReadOnlyList<Image> Images, string ModelZip, long ModelZipBytes, string ReferencedModel);

    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
        public long Seed { get; set; }
    }

    public static Result Run(string modelPath, string outDir, StableDiffusionOptions options, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Prompts.Count == 0) throw new ArgumentException("Give at least one prompt.", nameof(options));
        Directory.CreateDirectory(outDir);
        string thumbnails = Path.Combine(outDir, "thumbnails");
        Directory.CreateDirectory(thumbnails);
        var clock = Stopwatch.StartNew();
        var ml = new MLContext(seed: 0);

        // 1. The prompts as an IDataView: one row per image, each with its own seed so an image does not depend on the others.
        var rows = options.Prompts.Select((p, i) => new PromptRow { Prompt = p, Negative = options.NegativePrompt ?? "", Seed = options.Seed + i }).ToList();
        var prompts = ml.Data.LoadFromEnumerable(rows);

        string zip = Path.Combine(outDir, "stable-diffusion.zip");
        var images = new List<Image>();
        int width, height;
        using (var model = StableDiffusionFormat.Load(modelPath, tokenizerFolder: options.TokenizerFolder))
        {
            // 2. The model samples as its scheduler says: the folder's scheduler_config.json, or PNDM for a single file
            //    (what diffusers' from_single_file picks).
            var generation = Directory.Exists(modelPath) ? GenerationOptions.FromDiffusers(modelPath) : new GenerationOptions { Sampler = SamplerName.Pndm };
            height = options.Height ?? (int)model.ImageShape[1];
            width = options.Width ?? (int)model.ImageShape[2];
            generation.Steps = options.Steps;
            generation.GuidanceScale = options.Guidance;
            generation.Width = width;
            generation.Height = height;
            log.WriteLine($"Stable Diffusion model '{modelPath}': {model.Network.parameters().Sum(p => p.numel()):N0} UNet parameters, {model.Prediction} prediction, " +
                          $"loaded in {clock.Elapsed.TotalSeconds:F1} s. Drawing {width}×{height} with {generation.Sampler}, {options.Steps} steps, guidance {options.Guidance}.");

            // 3. DiffusionGenerate → ResizeImages. A batch of one row per sampler run gives per-image timings and keeps memory low.
            int thumbWidth = options.ThumbnailWidth, thumbHeight = Math.Max(1, (int)Math.Round((double)options.ThumbnailWidth * height / width));
            var pipeline = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
                {
                    OutputColumnName = "Image",
                    ConditionColumnName = nameof(PromptRow.Prompt),
                    NegativePromptColumnName = nameof(PromptRow.Negative),
                    SeedColumnName = nameof(PromptRow.Seed),
                    BatchSize = 1,
                    Generation = generation,
                })
                .Append(ml.Transforms.ResizeImages("Thumbnail", thumbWidth, thumbHeight, "Image"));
            var fitted = pipeline.Fit(prompts);

            // 4. The fitted pipeline as a model zip: it holds the stage settings and a reference to the model's files
            //    (path and SHA-256), not gigabytes of copied weights.
            ml.Model.SaveAtomically(fitted, prompts.Schema, zip);

            // 5. Images are drawn as the cursor reaches their rows; each is written as a PNG with its thumbnail.
            var generated = fitted.Transform(prompts);
            var schema = generated.Schema;
            using var cursor = generated.GetRowCursor([schema["Image"], schema["Thumbnail"], schema[nameof(PromptRow.Prompt)], schema[nameof(PromptRow.Seed)]]);
            var imageGetter = cursor.GetGetter<MLImage>(schema["Image"]);
            var thumbGetter = cursor.GetGetter<MLImage>(schema["Thumbnail"]);
            var promptGetter = cursor.GetGetter<ReadOnlyMemory<char>>(schema[nameof(PromptRow.Prompt)]);
            var seedGetter = cursor.GetGetter<long>(schema[nameof(PromptRow.Seed)]);
            var imageClock = Stopwatch.StartNew();
            while (cursor.MoveNext())
            {
                MLImage image = null!, thumb = null!;
                ReadOnlyMemory<char> prompt = default;
                long seed = 0;
                imageGetter(ref image);
                thumbGetter(ref thumb);
                promptGetter(ref prompt);
                seedGetter(ref seed);
                double seconds = imageClock.Elapsed.TotalSeconds;
                string name = $"{images.Count + 1:00}-{Slug(prompt.ToString())}.png";
                string path = Path.Combine(outDir, name), thumbPath = Path.Combine(thumbnails, name);
                image.Save(path);
                thumb.Save(thumbPath);
                image.Dispose();
                thumb.Dispose();
                images.Add(new Image(prompt.ToString(), seed, path, thumbPath, seconds));
                log.WriteLine($"  [{images.Count}/{rows.Count}] \"{prompt}\" (seed {seed}): {seconds:F1} s → {path}");
                imageClock.Restart();
            }
            (fitted as IDisposable)?.Dispose();
        }

        // 6. A fresh MLContext loads the zip: it finds the model's files again by the path it refers to.
        long zipBytes = new FileInfo(zip).Length;
        string referenced = ReferencedModel(zip);
        var reloadClock = Stopwatch.StartNew();
        var reloaded = new MLContext(seed: 0).Model.Load(zip, out var inputSchema);
        log.WriteLine($"Model zip '{zip}': {zipBytes:N0} bytes, refers to {referenced}; reloaded in {reloadClock.Elapsed.TotalSeconds:F1} s " +
                      $"(input columns: {string.Join(", ", inputSchema.Select(c => c.Name))}).");
        (reloaded as IDisposable)?.Dispose();

        double total = images.Sum(i => i.Seconds);
        log.WriteLine($"Drew {images.Count} images in {total:F1} s ({total / images.Count:F1} s per image); done in {clock.Elapsed.TotalSeconds:F0} s.");
        log.WriteLine($"Images: {Path.GetFullPath(outDir)}");
        log.WriteLine($"Thumbnails: {Path.GetFullPath(thumbnails)}");
        return new Result(outDir, width, height, images, zip, zipBytes, referenced);
    }

    // The model reference the generation stage wrote into the zip, for the log: the path and the start of its SHA-256.
    private static string ReferencedModel(string zip)
    {
        using var archive = ZipFile.OpenRead(zip);
        var entry = archive.Entries.FirstOrDefault(e => e.Name.EndsWith("DiffusionModelSource.json", StringComparison.Ordinal));
        if (entry is null) return "no model files (it holds its own weights)";
        using var stream = entry.Open();
        using var json = JsonDocument.Parse(stream);
        string? path = null, sha = null;
        foreach (var property in json.RootElement.EnumerateObject())
        {
            if (property.Name.Equals("path", StringComparison.OrdinalIgnoreCase)) path = property.Value.GetString();
            if (property.Name.Equals("sha256", StringComparison.OrdinalIgnoreCase)) sha = property.Value.GetString();
        }
        return $"'{path}' (SHA-256 {sha?[..Math.Min(12, sha.Length)]}…)";
    }

    // A file name from a prompt: lower-case letters and digits, runs of anything else as one '-', at most 40 characters.
    private static string Slug(string prompt)
    {
        var slug = new StringBuilder();
        foreach (char c in prompt.ToLowerInvariant())
        {
            if (char.IsAsciiLetterOrDigit(c)) slug.Append(c);
            else if (slug.Length > 0 && slug[^1] != '-') slug.Append('-');
            if (slug.Length >= 40) break;
        }
        string text = slug.ToString().Trim('-');
        return text.Length == 0 ? "image" : text;
    }
}
