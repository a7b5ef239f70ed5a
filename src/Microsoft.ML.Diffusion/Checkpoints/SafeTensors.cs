using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the tensors' little-endian bytes, in order, with no gaps.
/// </summary>
internal static class SafeTensors
{
    private static readonly Dictionary<ScalarType, string> Names = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16", [ScalarType.BFloat16] = "BF16",
        [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32", [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8",
        [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    /// <summary>The tensors (on any device) as a safetensors file's bytes; names in the given order.</summary>
    public static byte[] Write(IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new JsonObject();
        if (metadata is { Count: > 0 }) header["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        var data = new List<byte[]>();
        long offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            byte[] bytes = cpu.bytes.ToArray();
            if (!Names.TryGetValue(cpu.dtype, out var dtype)) throw new NotSupportedException($"Tensor '{name}' has dtype {cpu.dtype}, which safetensors files here do not store.");
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray([.. cpu.shape.Select(d => (JsonNode?)d)]),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            data.Add(bytes);
            offset += bytes.Length;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;   // keeps the data 8-byte aligned; padding is spaces, as the format allows
        using var stream = new MemoryStream();
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
        stream.Write(length);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var bytes in data) stream.Write(bytes);
        return stream.ToArray();
    }

    /// <summary>Reads every tensor (on the CPU, owned by the caller); <paramref name="source"/> names the file in errors.</summary>
    public static Dictionary<string, Tensor> Read(byte[] file, string source)
    {
        if (file.Length < 8) throw new CheckpointFormatException($"{source} is truncated: a safetensors file needs at least 8 bytes, it has {file.Length}.");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (headerLength > (ulong)(file.Length - 8)) throw new CheckpointFormatException($"{source} is truncated: its safetensors header should be {headerLength} bytes but only {file.Length - 8} remain.");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(file.AsSpan(8, (int)headerLength)) as JsonObject ?? throw new CheckpointFormatException($"{source} has a safetensors header that is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{source} has a corrupt safetensors header: {e.Message}", e);
        }
        int dataStart = 8 + (int)headerLength;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__") continue;
                var entry = node as JsonObject ?? throw new CheckpointFormatException($"{source}: tensor '{name}' has no description.");
                string dtype = entry["dtype"] is JsonValue d && d.TryGetValue<string>(out var text) ? text : throw new CheckpointFormatException($"{source}: tensor '{name}' has no dtype.");
                var type = Names.FirstOrDefault(kv => kv.Value == dtype).Key;
                if (!Names.ContainsValue(dtype)) throw new CheckpointFormatException($"{source}: tensor '{name}' has dtype {dtype}, which this library cannot read.");
                long[] shape = [.. (entry["shape"] as JsonArray ?? throw new CheckpointFormatException($"{source}: tensor '{name}' has no shape.")).Select(d => Integer(d, source, name, "shape"))];
                var offsets = entry["data_offsets"] is JsonArray { Count: 2 } pair ? pair : throw new CheckpointFormatException($"{source}: tensor '{name}' has no data offsets (two numbers).");
                long begin = Integer(offsets[0], source, name, "data offsets"), end = Integer(offsets[1], source, name, "data offsets");
                long expected = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(type);
                if (begin < 0 || end < begin || dataStart + end > file.Length)
                    throw new CheckpointFormatException($"{source} is truncated: tensor '{name}' needs bytes {begin}–{end} of the data, which has {file.Length - dataStart}.");
                if (end - begin != expected)
                    throw new CheckpointFormatException($"{source}: tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} should have {expected} bytes, not {end - begin}.");
                var tensor = empty(shape, dtype: type);
                file.AsSpan(dataStart + (int)begin, (int)(end - begin)).CopyTo(tensor.bytes);
                result[name] = tensor.DetachFromDisposeScope();
            }
        }
        catch (Exception e)
        {
            foreach (var t in result.Values) t.Dispose();
            // A header entry of the wrong JSON type (a string where a number belongs, a missing offset) is a corrupt file too.
            if (e is InvalidOperationException or FormatException)
                throw new CheckpointFormatException($"{source} has a malformed safetensors header: {e.Message}", e);
            throw;
        }
        return result;
    }

    private static long Integer(JsonNode? node, string source, string name, string field) =>
        node is JsonValue value && value.TryGetValue<long>(out long number)
            ? number
            : throw new CheckpointFormatException($"{source}: tensor '{name}' has {node?.ToJsonString() ?? "null"} in its {field}, where a whole number belongs.");

    private static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };
}
