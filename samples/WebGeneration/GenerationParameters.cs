using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>What a client asks for: the body of <c>POST /generate</c>, or the query of <c>GET /events</c>.</summary>
public sealed class GenerationParameters
{
    public long Seed { get; set; }

    /// <summary>Denoising steps; null uses <see cref="WebGenerationApp.DefaultSteps"/>.</summary>
    public int? Steps { get; set; }

    /// <summary>A registered sampler's name; null uses the library's default (DPM-Solver++).</summary>
    public string? Sampler { get; set; }

    public double Guidance { get; set; } = 1.0;

    /// <summary>A class label, for a class-conditional model.</summary>
    public long? Condition { get; set; }

    /// <summary>The prompt, for a model that takes prompts (Stable Diffusion); null is the empty prompt.</summary>
    public string? Prompt { get; set; }

    /// <summary>What to steer away from, for a model that takes prompts; used when guidance is not 1.</summary>
    public string? NegativePrompt { get; set; }

    // Misspelled fields are refused rather than ignored, so a typo does not silently fall back to a default.
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.Strict,
    };

    /// <summary>Reads the parameters from a query string; a value that does not parse throws <see cref="FormatException"/> naming it.</summary>
    internal static GenerationParameters FromQuery(IQueryCollection query)
    {
        var known = new[] { "seed", "steps", "sampler", "guidance", "condition", "prompt", "negativePrompt" };
        foreach (var key in query.Keys)
            if (!known.Contains(key, StringComparer.OrdinalIgnoreCase))
                throw new FormatException($"Unknown parameter '{key}' (known: {string.Join(", ", known)}).");
        var p = new GenerationParameters();
        if (Value(query, "seed") is { } seed) p.Seed = Parse<long>(seed, "seed");
        if (Value(query, "steps") is { } steps) p.Steps = Parse<int>(steps, "steps");
        p.Sampler = Value(query, "sampler");
        if (Value(query, "guidance") is { } guidance) p.Guidance = Parse<double>(guidance, "guidance");
        if (Value(query, "condition") is { } condition) p.Condition = Parse<long>(condition, "condition");
        p.Prompt = Value(query, "prompt");
        p.NegativePrompt = Value(query, "negativePrompt");
        return p;
    }

    private static string? Value(IQueryCollection query, string key) => query.TryGetValue(key, out var v) && !string.IsNullOrEmpty(v.ToString()) ? v.ToString() : null;

    private static T Parse<T>(string text, string name) where T : IParsable<T>
        => T.TryParse(text, CultureInfo.InvariantCulture, out var value) ? value : throw new FormatException($"'{name}' must be a number, not '{text}'.");
}
