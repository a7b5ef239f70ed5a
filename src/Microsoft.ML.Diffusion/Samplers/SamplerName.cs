using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The registered name of a sampler (<see cref="DiffusionSamplers"/>), e.g. "ddim" or "euler-ancestral". Converts from a
/// string and from <see cref="SamplerKind"/>, so <c>Sampler = SamplerKind.Ddim</c> and <c>Sampler = "heun"</c> both work.
/// Names compare case-insensitively; the enum's names ("DpmSolverPlusPlus") are accepted as aliases.
/// </summary>
[JsonConverter(typeof(SamplerNameJsonConverter))]
public readonly struct SamplerName : IEquatable<SamplerName>
{
    private readonly string? _value;

    /// <summary>A name as given; it is resolved when a sampler is created.</summary>
    public SamplerName(string value)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(value);
        _value = Normalize(value.Trim());
    }

    /// <summary>The canonical name.</summary>
    public string Value => _value ?? DiffusionSamplers.DpmSolverPlusPlus;

    /// <summary>A name from its string.</summary>
    public static implicit operator SamplerName(string value) => new(value);

    /// <summary>The name of a built-in sampler.</summary>
    public static implicit operator SamplerName(SamplerKind kind) => new(DiffusionSamplers.NameOf(kind));

    /// <inheritdoc/>
    public bool Equals(SamplerName other) => string.Equals(Value, other.Value, StringComparison.Ordinal);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is SamplerName other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);

    /// <summary>Whether two names are the same sampler.</summary>
    public static bool operator ==(SamplerName a, SamplerName b) => a.Equals(b);

    /// <summary>Whether two names are different samplers.</summary>
    public static bool operator !=(SamplerName a, SamplerName b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() => Value;

    // Lower case, and the enum's names (written by earlier versions into model zips) mapped to registry names.
    private static string Normalize(string value)
        => Enum.TryParse<SamplerKind>(value, ignoreCase: true, out var kind) && !int.TryParse(value, out _)
            ? DiffusionSamplers.NameOf(kind)
            : value.ToLowerInvariant();
}

/// <summary>A <see cref="SamplerName"/> as a JSON string.</summary>
internal sealed class SamplerNameJsonConverter : JsonConverter<SamplerName>
{
    public override SamplerName Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => new(reader.GetString() ?? throw new JsonException("A sampler name must be a string."));

    public override void Write(Utf8JsonWriter writer, SamplerName value, JsonSerializerOptions options) => writer.WriteStringValue(value.Value);
}
