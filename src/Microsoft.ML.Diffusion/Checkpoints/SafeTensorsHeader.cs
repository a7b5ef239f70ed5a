using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>One tensor a safetensors header describes: its dtype, shape and byte range in the data section.</summary>
internal sealed record SafeTensorsEntry(string Name, ScalarType DType, string DTypeName, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// A safetensors file's header, checked against the file's length: an 8-byte little-endian length, then that many bytes
/// of JSON mapping each tensor name to its dtype, shape and byte range in the data that follows. Every range must lie
/// inside the data and no two may overlap; each range's length must be its shape times its dtype's size.
/// </summary>
internal sealed class SafeTensorsHeader
{
    /// <summary>safetensors' own limit on the JSON header; a larger length means a corrupt or foreign file.</summary>
    public const long MaxJsonLength = 100_000_000;

    private static readonly (string Name, ScalarType Type, int Size)[] DTypes =
    [
        ("F32", ScalarType.Float32, 4), ("F64", ScalarType.Float64, 8), ("F16", ScalarType.Float16, 2), ("BF16", ScalarType.BFloat16, 2),
        ("I64", ScalarType.Int64, 8), ("I32", ScalarType.Int32, 4), ("I16", ScalarType.Int16, 2), ("I8", ScalarType.Int8, 1),
        ("U8", ScalarType.Byte, 1), ("BOOL", ScalarType.Bool, 1),
    ];

    private SafeTensorsHeader(IReadOnlyList<SafeTensorsEntry> entries, IReadOnlyDictionary<string, string> metadata, long dataStart)
    {
        Entries = entries;
        Metadata = metadata;
        DataStart = dataStart;
    }

    /// <summary>The tensors in the header's order.</summary>
    public IReadOnlyList<SafeTensorsEntry> Entries { get; }

    /// <summary>The <c>__metadata__</c> strings (empty when there are none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Where the data section starts in the file: 8 + the JSON's length.</summary>
    public long DataStart { get; }

    /// <summary>The safetensors name of a dtype (F32, BF16, …), or null when the format has none here.</summary>
    public static string? DTypeName(ScalarType type) => DTypes.FirstOrDefault(d => d.Type == type).Name;

    /// <summary>Bytes per element of a dtype the format stores.</summary>
    public static int ElementSize(ScalarType type) => DTypes.First(d => d.Type == type).Size;

    /// <summary>The JSON's length from the first 8 bytes, checked against the file's length.</summary>
    public static long JsonLength(ReadOnlySpan<byte> first8, long fileLength, string source)
    {
        if (fileLength < 8) throw new CheckpointFormatException($"{source} is truncated: a safetensors file needs at least 8 bytes, it has {fileLength}.");
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(first8);
        if (length > MaxJsonLength)
            throw new CheckpointFormatException($"{source} is not a safetensors file: its header length {length} is over safetensors' limit of {MaxJsonLength} bytes.");
        if (length > (ulong)(fileLength - 8))
            throw new CheckpointFormatException($"{source} is truncated: its safetensors header should be {length} bytes but only {fileLength - 8} remain.");
        return (long)length;
    }

    /// <summary>Parses the JSON (the bytes after the length) of a file of <paramref name="fileLength"/> bytes.</summary>
    public static SafeTensorsHeader Parse(ReadOnlySpan<byte> json, long fileLength, string source)
    {
        long dataStart = 8 + json.Length;
        long dataLength = fileLength - dataStart;
        JsonObject header;
        try
        {
            header = JsonNode.Parse(json) as JsonObject ?? throw new CheckpointFormatException($"{source} has a safetensors header that is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{source} has a corrupt safetensors header: {e.Message}", e);
        }
        var entries = new List<SafeTensorsEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__")
                {
                    foreach (var (key, value) in node as JsonObject ?? throw new CheckpointFormatException($"{source} has __metadata__ that is not a JSON object."))
                        metadata[key] = value is JsonValue v && v.TryGetValue<string>(out var text) ? text : throw new CheckpointFormatException($"{source}: __metadata__ '{key}' is not a string.");
                    continue;
                }
                entries.Add(Entry(name, node, source));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException and not CheckpointFormatException)
        {
            // A header entry of the wrong JSON type (a string where a number belongs, a missing offset) is a corrupt file too.
            throw new CheckpointFormatException($"{source} has a malformed safetensors header: {e.Message}", e);
        }
        CheckRanges(entries, dataLength, source);
        return new SafeTensorsHeader(entries, metadata, dataStart);
    }

    /// <summary>Reads the header of an open file.</summary>
    public static SafeTensorsHeader Read(SafeFileHandle file, string source)
    {
        long fileLength = RandomAccess.GetLength(file);
        Span<byte> first8 = stackalloc byte[8];
        if (fileLength >= 8) ReadExactly(file, first8, 0, source);
        long jsonLength = JsonLength(first8, fileLength, source);
        var json = new byte[jsonLength];
        ReadExactly(file, json, 8, source);
        return Parse(json, fileLength, source);
    }

    private static void ReadExactly(SafeFileHandle file, Span<byte> buffer, long offset, string source)
    {
        for (int done = 0; done < buffer.Length;)
        {
            int read = RandomAccess.Read(file, buffer[done..], offset + done);
            if (read == 0) throw new CheckpointFormatException($"{source} is truncated: its safetensors header ends early.");
            done += read;
        }
    }

    private static SafeTensorsEntry Entry(string name, JsonNode? node, string source)
    {
        var entry = node as JsonObject ?? throw new CheckpointFormatException($"{source}: tensor '{name}' has no description.");
        string dtype = entry["dtype"] is JsonValue d && d.TryGetValue<string>(out var text) ? text : throw new CheckpointFormatException($"{source}: tensor '{name}' has no dtype.");
        int index = Array.FindIndex(DTypes, t => t.Name == dtype);
        if (index < 0) throw new CheckpointFormatException($"{source}: tensor '{name}' has dtype {dtype}, which this library cannot read.");
        var (_, type, size) = DTypes[index];
        long[] shape = [.. (entry["shape"] as JsonArray ?? throw new CheckpointFormatException($"{source}: tensor '{name}' has no shape.")).Select(x => Integer(x, source, name, "shape"))];
        if (shape.Any(x => x < 0)) throw new CheckpointFormatException($"{source}: tensor '{name}' has a negative size in its shape [{string.Join(", ", shape)}].");
        var offsets = entry["data_offsets"] is JsonArray { Count: 2 } pair ? pair : throw new CheckpointFormatException($"{source}: tensor '{name}' has no data offsets (two numbers).");
        long begin = Integer(offsets[0], source, name, "data offsets"), end = Integer(offsets[1], source, name, "data offsets");
        if (begin < 0 || end < begin) throw new CheckpointFormatException($"{source}: tensor '{name}' has data offsets [{begin}, {end}], which is no byte range.");
        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (a, b) => a * b) * size);
        }
        catch (OverflowException)
        {
            throw new CheckpointFormatException($"{source}: tensor '{name}' has shape [{string.Join(", ", shape)}], too large to be real.");
        }
        if (end - begin != expected)
            throw new CheckpointFormatException($"{source}: tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} should have {expected} bytes, not {end - begin}.");
        return new SafeTensorsEntry(name, type, dtype, shape, begin, end);
    }

    // Ranges past the end mean a truncated file (named by the first tensor, in file order, whose bytes are missing);
    // overlapping ranges mean a corrupt one.
    private static void CheckRanges(List<SafeTensorsEntry> entries, long dataLength, string source)
    {
        var byOffset = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToArray();
        foreach (var e in byOffset)
        {
            if (e.End > dataLength)
                throw new CheckpointFormatException($"{source} is truncated: tensor '{e.Name}' needs bytes {e.Begin}–{e.End} of the data, which has {Math.Max(0, dataLength)}.");
        }
        for (int i = 1; i < byOffset.Length; i++)
        {
            var (previous, next) = (byOffset[i - 1], byOffset[i]);
            if (next.Begin < previous.End && next.ByteLength > 0 && previous.ByteLength > 0)
                throw new CheckpointFormatException($"{source} is corrupt: tensors '{previous.Name}' (bytes {previous.Begin}–{previous.End}) and '{next.Name}' (bytes {next.Begin}–{next.End}) overlap.");
        }
    }

    private static long Integer(JsonNode? node, string source, string name, string field) =>
        node is JsonValue value && value.TryGetValue<long>(out long number)
            ? number
            : throw new CheckpointFormatException($"{source}: tensor '{name}' has {node?.ToJsonString() ?? "null"} in its {field}, where a whole number belongs.");
}
