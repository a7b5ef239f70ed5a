using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Tokenization;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers <c>StableDiffusionPipeline</c> folder (<c>model_index.json</c>; <c>unet/</c>, <c>vae/</c>,
/// <c>text_encoder/</c>, <c>tokenizer/</c>, <c>scheduler/</c>) read into <see cref="StableDiffusionParts"/>. Weights may be
/// float32 or float16, in the plain files or diffusers' <c>fp16</c> variant files; they are held as float32.
/// </summary>
internal static class StableDiffusionPipelineFolder
{
    public const string IndexFile = "model_index.json";

    private static readonly (string Folder, string Class)[] Components =
    [
        ("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL"), ("text_encoder", "CLIPTextModel"), ("tokenizer", "CLIPTokenizer"), ("scheduler", ""),
    ];

    // Pipelines of families this library does not run yet, by model_index.json's class.
    private static readonly Dictionary<string, string> OtherFamilies = new()
    {
        ["StableDiffusionXLPipeline"] = "SDXL", ["StableDiffusionXLImg2ImgPipeline"] = "SDXL", ["StableDiffusion3Pipeline"] = "Stable Diffusion 3",
        ["FluxPipeline"] = "FLUX", ["KandinskyV22Pipeline"] = "Kandinsky 2.2", ["StableDiffusionUpscalePipeline"] = "the Stable Diffusion upscaler",
        ["StableDiffusionInpaintPipeline"] = "Stable Diffusion inpainting (a 9-channel UNet)",
    };

    /// <summary>Whether <paramref name="folder"/> has a model_index.json naming a Stable Diffusion pipeline (or another text-to-image family, refused on load).</summary>
    public static bool IsTextToImagePipeline(string folder)
    {
        string index = Path.Combine(folder, IndexFile);
        if (!File.Exists(index)) return false;
        string? name = ClassName(index);
        return name is not null && (name.StartsWith("StableDiffusion", StringComparison.Ordinal) || OtherFamilies.ContainsKey(name));
    }

    public static StableDiffusionParts Load(string folder)
    {
        string indexPath = Path.Combine(folder, IndexFile);
        var index = ReadIndex(indexPath);
        string className = index["_class_name"]?.GetValue<string>() ?? "";
        if (OtherFamilies.TryGetValue(className, out var family))
            throw new NotSupportedException($"'{folder}' is a {className} folder: {family} is not supported yet; Stable Diffusion 1.x and 2.x (StableDiffusionPipeline) are.");
        if (className is not ("StableDiffusionPipeline" or "StableDiffusionImg2ImgPipeline"))
            throw new CheckpointFormatException($"'{indexPath}' names a {className}; a Stable Diffusion 1.x or 2.x folder is a StableDiffusionPipeline.");
        CheckComponents(folder, index);

        var scheduler = DiffusersSchedulerConfig.ReadFolder(folder);
        var tokenizer = ClipTokenizer.FromFolder(Path.Combine(folder, "tokenizer"));
        string unetFolder = Path.Combine(folder, "unet");
        string unetConfigJson = File.ReadAllText(Path.Combine(unetFolder, UNet2DConditionModel.ConfigFile));
        var unetConfig = UNet2DConditionModelConfig.Read(unetConfigJson, $"'{Path.Combine(unetFolder, UNet2DConditionModel.ConfigFile)}'");
        var textConfig = ClipTextConfig.Read(File.ReadAllText(Path.Combine(folder, "text_encoder", ClipTextEncoderFolder.ConfigFile)), $"'{Path.Combine(folder, "text_encoder")}'");
        var vaeConfig = AutoencoderKLConfig.Read(File.ReadAllText(Path.Combine(folder, "vae", AutoencoderKLFolder.ConfigFile)), $"'{Path.Combine(folder, "vae")}'");
        if (unetConfig.CrossAttentionDim != textConfig.HiddenSize)
            throw new CheckpointFormatException($"'{folder}' does not fit together: the UNet's cross_attention_dim is {unetConfig.CrossAttentionDim} but the text encoder's hidden_size is {textConfig.HiddenSize}.");
        if (vaeConfig.LatentChannels != unetConfig.InChannels)
            throw new CheckpointFormatException($"'{folder}' does not fit together: the autoencoder's latent_channels is {vaeConfig.LatentChannels} but the UNet takes {unetConfig.InChannels} channels.");

        UNet2DConditionModel? unet = null;
        AutoencoderKL? vae = null;
        try
        {
            unet = UNet2DConditionModel.FromPretrained(unetFolder, Variant(unetFolder, UNet2DConditionModel.WeightsFile));
            vae = AutoencoderKLFolder.Load(Path.Combine(folder, "vae"));
            var text = ClipTextEncoderFolder.Load(Path.Combine(folder, "text_encoder"));
            var mapping = scheduler.Mapping;
            return new StableDiffusionParts(unet, unetConfigJson, vae, text, 0, tokenizer, mapping.Schedule, mapping.Options.Prediction,
                mapping.Sampler, mapping.Options, File.ReadAllText(scheduler.Path), textConfig.HiddenSize >= 1024 ? "Stable Diffusion 2.x" : "Stable Diffusion 1.x");
        }
        catch
        {
            unet?.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    /// <summary>The weight files a folder's model is read from, for its checksum.</summary>
    public static IEnumerable<string> WeightFiles(string folder)
        => new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" }
            .SelectMany(sub => Directory.Exists(Path.Combine(folder, sub)) ? Directory.GetFiles(Path.Combine(folder, sub)) : [])
            .Append(Path.Combine(folder, IndexFile))
            .Order(StringComparer.Ordinal);

    // diffusers' "fp16" variant files (diffusion_pytorch_model.fp16.safetensors) stand in when the plain file is absent.
    private static string? Variant(string componentFolder, string plainFile)
    {
        if (File.Exists(Path.Combine(componentFolder, plainFile))) return null;
        string fp16 = Path.ChangeExtension(plainFile, null) + ".fp16" + Path.GetExtension(plainFile);
        return File.Exists(Path.Combine(componentFolder, fp16)) ? "fp16" : null;
    }

    private static JsonObject ReadIndex(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CheckpointFormatException($"'{path}' is not a JSON object.");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CheckpointFormatException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }

    private static string? ClassName(string indexPath)
    {
        try
        {
            return (JsonNode.Parse(File.ReadAllText(indexPath)) as JsonObject)?["_class_name"]?.GetValue<string>();
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            return null;
        }
    }

    // Every component folder at once, and each of the kind model_index.json says it is.
    private static void CheckComponents(string folder, JsonObject index)
    {
        var missing = Components.Where(c => !Directory.Exists(Path.Combine(folder, c.Folder))).Select(c => c.Folder + "/").ToList();
        if (missing.Count > 0)
            throw new CheckpointFormatException($"'{folder}' lacks {string.Join(", ", missing)}; a Stable Diffusion folder needs unet/, vae/, text_encoder/, tokenizer/ and scheduler/.");
        foreach (var (name, expected) in Components)
        {
            if (expected.Length == 0 || index[name] is not JsonArray { Count: 2 } entry) continue;
            string? actual = entry[1]?.GetValue<string>();
            if (actual is not null && actual != expected && !(name == "tokenizer" && actual == "CLIPTokenizerFast"))
                throw new CheckpointFormatException($"'{folder}''s {name} is a {actual}; a Stable Diffusion 1.x/2.x pipeline has a {expected} there.");
        }
    }
}
