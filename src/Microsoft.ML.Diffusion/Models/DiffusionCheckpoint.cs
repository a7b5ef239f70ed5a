using System.Security.Cryptography;
using System.Text.Json.Serialization;
using System.Text.Json;
using System.Text;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Storage;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// The checkpoint file format (docs/model-format.md): one self-describing file holding a JSON header (network kind and
/// configuration, schedule, prediction type) and the weights, with a length and SHA-256 so truncation or corruption is
/// caught before any weight is loaded. Layout: magic "MLDIFFCK", int32 format version, int32 header length, UTF-8 JSON
/// header, int64 weights length, 32-byte SHA-256 of the weights, weights (format 2: safetensors; format 1: TorchSharp's
/// module format).
/// </summary>
internal static class DiffusionCheckpoint
{
    /// <summary>The format version this library writes and the newest it reads.</summary>
    public const int FormatVersion = 2;

    private static readonly byte[] Magic = "MLDIFFCK"u8.ToArray();
    private const int MaxHeaderBytes = 1 << 20;

    /// <summary>JSON settings for headers: enums as names, so files stay readable and stable.</summary>
    public static JsonSerializerOptions JsonOptions => DiffusionJson.Options;

    /// <summary>Writes a checkpoint to <paramref name="stream"/>.</summary>
    internal static void Write(Stream stream, CheckpointHeader header, byte[] weights)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(weights);
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header, JsonOptions);
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(FormatVersion);
        writer.Write(json.Length);
        writer.Write(json);
        writer.Write((long)weights.Length);
        writer.Write(SHA256.HashData(weights));
        writer.Write(weights);
    }

    /// <summary>
    /// Writes a checkpoint file atomically: to a temporary file beside it, flushed to disk, then renamed
    /// over the target, so a crash mid-write never destroys the previous file.
    /// </summary>
    internal static void WriteFile(string path, CheckpointHeader header, byte[] weights)
        => AtomicFile.Write(path, stream => Write(stream, header, weights));

    /// <summary>Reads and verifies a checkpoint; <paramref name="source"/> names it in error messages.</summary>
    public static (CheckpointHeader Header, byte[] Weights) Read(Stream stream, string source = "the checkpoint")
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        try
        {
            byte[] magic = reader.ReadBytes(Magic.Length);
            if (magic.Length == 0)
                throw new CheckpointFormatException($"{source} is empty (0 bytes).");
            if (!magic.AsSpan().SequenceEqual(Magic))
                throw new CheckpointFormatException($"{source} is not a Microsoft.ML.Diffusion checkpoint (its first bytes are not the \"MLDIFFCK\" signature).");
            int version = reader.ReadInt32();
            if (version > FormatVersion)
                throw new CheckpointFormatException($"{source} has checkpoint format version {version}, written by a newer Microsoft.ML.Diffusion; this version reads formats up to {FormatVersion}. Upgrade the library to load it.");
            if (version < 1)
                throw new CheckpointFormatException($"{source} has an invalid checkpoint format version ({version}).");
            int headerLength = reader.ReadInt32();
            if (headerLength <= 0 || headerLength > MaxHeaderBytes)
                throw new CheckpointFormatException($"{source} is corrupt: its header length ({headerLength} bytes) is not plausible.");
            byte[] json = ReadExactly(reader, headerLength, source, "header");
            CheckpointHeader header;
            try
            {
                header = JsonSerializer.Deserialize<CheckpointHeader>(json, JsonOptions)
                    ?? throw new CheckpointFormatException($"{source} is corrupt: its header is empty.");
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException($"{source} is corrupt: its header is not valid JSON ({e.Message}).", e);
            }
            catch (Networks.UnknownNoisePredictorException e)
            {
                throw new CheckpointFormatException($"{source} needs a noise predictor this process does not know: {e.Message}", e);
            }
            long weightsLength = reader.ReadInt64();
            if (weightsLength <= 0 || weightsLength > int.MaxValue)
                throw new CheckpointFormatException($"{source} is corrupt: its weights length ({weightsLength} bytes) is not plausible.");
            byte[] expectedHash = ReadExactly(reader, 32, source, "checksum");
            byte[] weights = ReadExactly(reader, (int)weightsLength, source, "weights");
            if (!SHA256.HashData(weights).AsSpan().SequenceEqual(expectedHash))
                throw new CheckpointFormatException($"{source} is corrupt: the weights do not match their SHA-256 checksum.");
            try
            {
                header.Network.Validate();
                header.Schedule.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CheckpointFormatException($"{source} describes an invalid model: {e.Message}", e);
            }
            return (header with { FormatVersion = version }, weights);
        }
        catch (EndOfStreamException e)
        {
            throw new CheckpointFormatException($"{source} is truncated: it ends before its header is complete.", e);
        }
    }

    private static byte[] ReadExactly(BinaryReader reader, int count, string source, string part)
    {
        byte[] bytes = reader.ReadBytes(count);
        if (bytes.Length != count)
            throw new CheckpointFormatException($"{source} is truncated: its {part} should be {count} bytes but only {bytes.Length} remain.");
        return bytes;
    }
}
