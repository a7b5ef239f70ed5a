using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// Reads TorchSharp's own module format (<c>Module.save</c>), which checkpoint format 1 stored its weights in: an LEB128
/// entry count, then per entry a .NET length-prefixed UTF-8 name, LEB128 dtype, rank and dimensions, and the raw bytes.
/// </summary>
internal static class TorchSharpWeights
{
    /// <summary>Every entry (on the CPU, owned by the caller); <paramref name="source"/> names the file in errors.</summary>
    public static Dictionary<string, Tensor> Read(byte[] data, string source)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using var reader = new BinaryReader(new MemoryStream(data, writable: false), Encoding.UTF8);
            long count = Decode(reader);
            for (long i = 0; i < count; i++)
            {
                string name = reader.ReadString();
                var type = (ScalarType)Decode(reader);
                var shape = new long[Decode(reader)];
                for (int d = 0; d < shape.Length; d++) shape[d] = Decode(reader);
                var tensor = empty(shape, dtype: type).DetachFromDisposeScope();
                result[name] = tensor;
                var bytes = tensor.bytes;
                if (reader.Read(bytes) != bytes.Length) throw new EndOfStreamException();
            }
            return result;
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or ArgumentException)
        {
            foreach (var t in result.Values) t.Dispose();
            throw new CheckpointFormatException($"{source} has weights in TorchSharp's format that cannot be read: {e.Message}", e);
        }
    }

    private static long Decode(BinaryReader reader)
    {
        long value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = reader.ReadByte();
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
            if (shift > 56) throw new ArgumentException("an LEB128 number is longer than 64 bits");
        }
    }
}
