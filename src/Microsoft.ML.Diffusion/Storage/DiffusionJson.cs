using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Storage;

/// <summary>The JSON settings of every file the library writes (checkpoint headers, stage settings): enums as names, so files stay readable and stable.</summary>
internal static class DiffusionJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        WriteIndented = false,
        Converters = { new JsonStringEnumConverter() },
    };
}
