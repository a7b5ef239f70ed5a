using Microsoft.ML.Diffusion.Models;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>
/// Reads the settings of sampling stages saved before <see cref="ModelPersistence.NestedSamplingSettings"/>: one flat JSON
/// object for every verb, the verb in a <c>Stage</c> field ("generate" when absent, "image-to-image", "inpaint"), the
/// sampler's settings beside the columns. The fields move to where today's options hold them, then deserialize as usual.
/// </summary>
internal static class LegacyStageSettings
{
    private static readonly string[] ColumnFields = ["OutputColumnName", "SeedColumnName", "ConditionColumnName", "Seed", "OutputKind", "BatchSize"];
    private static readonly string[] GenerationFields = ["Sampler", "Steps", "GuidanceScale", "ForwardBatchSize"];
    private static readonly string[] SamplerFields =
        ["Spacing", "StepsOffset", "Eta", "Clipping", "ClipRange", "ThresholdPercentile", "UseClippedModelOutput", "UseLargeVariance", "SetAlphaToOne"];
    private static readonly string[] InpaintingFields = ["JumpLength", "Resamplings", "Eta", "GuidanceScale", "ForwardBatchSize"];

    public static DiffusionStageOptions Read(byte[] json, bool keepsModelNoiseAfterClipping)
    {
        var flat = JsonNode.Parse(json) as JsonObject ?? throw new JsonException("the settings are not a JSON object.");
        string stage = flat["Stage"]?.GetValue<string>() ?? "generate";
        var columns = Pick(flat, ColumnFields);
        var generation = Pick(flat, GenerationFields);
        var sampler = Pick(flat, SamplerFields);
        // Stages written before diffusers' DDIM behaviour recomputed ε̂ from the clipped x̂₀ and keep doing so.
        if (!keepsModelNoiseAfterClipping) sampler["UseClippedModelOutput"] = true;
        generation["SamplerOptions"] = sampler;
        switch (stage)
        {
            case "generate":
                columns["Generation"] = generation;
                return Deserialize<DiffusionGenerationOptions>(columns);
            case "image-to-image":
                Copy(flat, columns, "ImageColumnName", "PixelRange", "Strength");
                columns["Generation"] = generation;
                return Deserialize<DiffusionImageToImageOptions>(columns);
            case "inpaint":
                Copy(flat, columns, "ImageColumnName", "PixelRange", "MaskColumnName");
                var inpainting = Pick(flat, InpaintingFields);
                // RePaint's steps were the generation steps, null meaning its own default.
                if (flat["Steps"] is JsonNode steps) inpainting["Steps"] = steps.DeepClone();
                columns["Inpainting"] = inpainting;
                return Deserialize<DiffusionInpaintingOptions>(columns);
            default:
                throw new JsonException($"the stage kind '{stage}' is unknown (known: generate, image-to-image, inpaint).");
        }
    }

    private static JsonObject Pick(JsonObject from, IEnumerable<string> fields)
    {
        var picked = new JsonObject();
        Copy(from, picked, [.. fields]);
        return picked;
    }

    private static void Copy(JsonObject from, JsonObject to, params string[] fields)
    {
        foreach (var field in fields)
        {
            // A null Steps means "the sampler's usual count" and stays null; other nulls take today's defaults.
            if (from.TryGetPropertyValue(field, out var value) && (value is not null || field is "Steps" or "SeedColumnName" or "ConditionColumnName"))
                to[field] = value?.DeepClone();
        }
    }

    private static T Deserialize<T>(JsonObject settings)
        => settings.Deserialize<T>(DiffusionCheckpoint.JsonOptions) ?? throw new JsonException("the settings are empty.");
}
