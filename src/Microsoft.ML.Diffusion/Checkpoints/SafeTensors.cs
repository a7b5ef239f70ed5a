using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the tensors' little-endian bytes, in order, with no gaps. These read and
/// write whole files in memory; <see cref="SafeTensorsFile"/> reads a file on disk one tensor at a time.
/// </summary>
internal static class SafeTensors
{
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
            if (SafeTensorsHeader.DTypeName(cpu.dtype) is not { } dtype) throw new NotSupportedException($"Tensor '{name}' has dtype {cpu.dtype}, which safetensors files here do not store.");
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
        long jsonLength = SafeTensorsHeader.JsonLength(file, file.Length, source);
        var header = SafeTensorsHeader.Parse(file.AsSpan(8, (int)jsonLength), file.Length, source);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var entry in header.Entries)
        {
            var tensor = empty(entry.Shape, dtype: entry.DType).DetachFromDisposeScope();
            file.AsSpan((int)(header.DataStart + entry.Begin), (int)entry.ByteLength).CopyTo(tensor.bytes);
            result[entry.Name] = tensor;
        }
        return result;
    }
}
