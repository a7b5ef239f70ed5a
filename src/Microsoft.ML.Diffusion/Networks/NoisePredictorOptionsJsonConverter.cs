using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// Writes a <see cref="NoisePredictorOptions"/> as its own JSON object with a leading "Type" naming its registered
/// kind, and reads it back through the registry. An object without "Type" is a UNet's options (files written
/// before networks were pluggable).
/// </summary>
internal sealed class NoisePredictorOptionsJsonConverter : JsonConverter<NoisePredictorOptions>
{
    public const string TypeProperty = "Type";

    public override NoisePredictorOptions? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var node = JsonNode.Parse(ref reader) as JsonObject ?? throw new JsonException("A noise predictor's options must be a JSON object.");
        string name = NoisePredictors.UNet;
        if (node.TryGetPropertyValue(TypeProperty, out var type))
        {
            name = type is JsonValue value && value.TryGetValue<string>(out var text)
                ? text
                : throw new JsonException($"The noise predictor's \"{TypeProperty}\" must be a registered name (a string), not {type?.ToJsonString() ?? "null"}.");
            node.Remove(TypeProperty);
        }
        var optionsType = NoisePredictors.OptionsTypeOf(name);
        return (NoisePredictorOptions?)node.Deserialize(optionsType, options)
            ?? throw new JsonException($"The options of noise predictor '{name}' are null.");
    }

    public override void Write(Utf8JsonWriter writer, NoisePredictorOptions value, JsonSerializerOptions options)
    {
        var node = JsonSerializer.SerializeToNode(value, value.GetType(), options)!.AsObject();
        node.Insert(0, TypeProperty, NoisePredictors.NameOf(value.GetType()));
        node.WriteTo(writer, options);
    }
}
