using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The one way to name a sampler: its registered name (<see cref="DiffusionSamplers"/>), e.g. "ddim" or "euler-ancestral".
/// The built-in samplers are <see cref="Ddpm"/>, <see cref="Ddim"/>, <see cref="DpmSolverPlusPlus"/>, <see cref="EulerAncestral"/>,
/// <see cref="Heun"/>, <see cref="Pndm"/>, <see cref="Euler"/> and <see cref="Lms"/>; any string converts, so <c>Sampler = SamplerName.Ddim</c> and <c>Sampler = "heun"</c> both work.
/// Names compare case-insensitively; the names earlier versions wrote into zips ("DpmSolverPlusPlus") still read.
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

    /// <summary>DDPM ancestral sampling (Ho et al. 2020, Algorithm 2); usually run with all T steps.</summary>
    public static SamplerName Ddpm => new(DiffusionSamplers.Ddpm);

    /// <summary>DDIM (Song et al. 2021): strided timesteps, deterministic at η = 0.</summary>
    public static SamplerName Ddim => new(DiffusionSamplers.Ddim);

    /// <summary>DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver, good in 10–25 steps.</summary>
    public static SamplerName DpmSolverPlusPlus => new(DiffusionSamplers.DpmSolverPlusPlus);

    /// <summary>Euler ancestral (k-diffusion's sample_euler_ancestral) on Karras noise levels.</summary>
    public static SamplerName EulerAncestral => new(DiffusionSamplers.EulerAncestral);

    /// <summary>Heun's second-order method (Karras et al. 2022, Algorithm 1) on Karras noise levels.</summary>
    public static SamplerName Heun => new(DiffusionSamplers.Heun);

    /// <summary>PLMS (PNDM without its Runge–Kutta warm-up; diffusers' PNDMScheduler with skip_prk_steps), Stable Diffusion 1.x's sampler.</summary>
    public static SamplerName Pndm => new(DiffusionSamplers.Pndm);

    /// <summary>Euler's method in σ (diffusers' EulerDiscreteScheduler), Stable Diffusion 2's sampler; deterministic.</summary>
    public static SamplerName Euler => new(DiffusionSamplers.Euler);

    /// <summary>The fourth-order linear multistep method in σ (diffusers' LMSDiscreteScheduler).</summary>
    public static SamplerName Lms => new(DiffusionSamplers.Lms);

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
