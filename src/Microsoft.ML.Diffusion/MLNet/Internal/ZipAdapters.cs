using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>
/// The LoRA adapters fused into a model whose zip refers to its base (<see cref="ReferencedModel"/>): each adapter's
/// factors as a stream of its own, the safetensors file <see cref="FusedLora.Save"/> writes (diffusers v0.21's layout,
/// alpha / rank multiplied into up), and <c>LoraAdapters.json</c> listing them in the order they were fused, each with
/// its scale, the file it was loaded from and the SHA-256 of its stream. Loading fuses them into the base again, in that
/// order at those scales, which gives the weights the model had when it was saved.
/// </summary>
internal static class ZipAdapters
{
    public const string ListStream = "LoraAdapters.json";

    /// <param name="Stream">The stream of the adapter's safetensors file, e.g. <c>LoraAdapter1.safetensors</c>.</param>
    /// <param name="Scale">The scale it is fused at.</param>
    /// <param name="Path">The LoRA file it was loaded from; empty for a LoRA trained in memory.</param>
    /// <param name="Sha256">Hex SHA-256 of the stream's bytes.</param>
    internal sealed record Entry(string Stream, double Scale, string Path, string Sha256);

    private sealed record EntryList(IReadOnlyList<Entry> Adapters);

    /// <summary>An adapter as the zip holds it.</summary>
    internal sealed record Saved(Entry Entry, byte[] Bytes);

    /// <summary>The adapters' streams, made before anything is written, so a failure leaves no half-written stage.</summary>
    public static IReadOnlyList<Saved> Serialize(IReadOnlyList<FusedLora> fused) => fused.Select((lora, i) =>
    {
        byte[] bytes = lora.ToSafeTensors();
        return new Saved(new Entry($"LoraAdapter{i + 1}.safetensors", lora.Scale, lora.Path, Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant()), bytes);
    }).ToList();

    public static void Write(ModelSaveContext ctx, IReadOnlyList<Saved> adapters)
    {
        foreach (var adapter in adapters) ctx.SaveBinaryStream(adapter.Entry.Stream, w => w.Write(adapter.Bytes));
        var list = new EntryList([.. adapters.Select(a => a.Entry)]);
        ctx.SaveBinaryStream(ListStream, w => w.Write(JsonSerializer.SerializeToUtf8Bytes(list, DiffusionCheckpoint.JsonOptions)));
    }

    /// <summary>The stage's adapters, each checked against its recorded SHA-256; null when the stage holds none.</summary>
    public static IReadOnlyList<Saved>? Read(ModelLoadContext ctx, string component)
    {
        byte[]? json = ReadStream(ctx, ListStream);
        if (json is null) return null;
        EntryList? list;
        try
        {
            list = JsonSerializer.Deserialize<EntryList>(json, DiffusionCheckpoint.JsonOptions);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"The model zip's {component} has a corrupt list of LoRA adapters ('{ListStream}'): {e.Message}", e);
        }
        if (list?.Adapters is not { Count: > 0 } entries || entries.Any(e => e is null || string.IsNullOrEmpty(e.Stream) || e.Sha256 is null || e.Path is null))
            throw new CheckpointFormatException($"The model zip's {component} has a corrupt list of LoRA adapters ('{ListStream}'): an entry lacks its stream, path or SHA-256.");
        var saved = new List<Saved>(entries.Count);
        foreach (var entry in entries)
        {
            string what = $"The model zip's {component}'s LoRA adapter '{entry.Stream}'";
            if (!double.IsFinite(entry.Scale)) throw new CheckpointFormatException($"{what} has scale {entry.Scale}; the zip is corrupt.");
            byte[] bytes = ReadStream(ctx, entry.Stream)
                ?? throw new CheckpointFormatException($"{what} is missing: '{ListStream}' lists it, but the zip has no such stream; the zip is incomplete.");
            string actual = Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();
            if (!string.Equals(actual, entry.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new CheckpointFormatException($"{what} is corrupt: its SHA-256 is {actual[..12]}…, but {entry.Sha256[..Math.Min(12, entry.Sha256.Length)]}… was saved.");
            saved.Add(new Saved(entry, bytes));
        }
        return saved;
    }

    /// <summary>Fuses the adapters into <paramref name="model"/> in their order; on failure none stays fused.</summary>
    public static void Fuse(DiffusionModel model, IReadOnlyList<Saved> adapters, string component)
    {
        var fused = new List<FusedLora>(adapters.Count);
        try
        {
            foreach (var (entry, bytes) in adapters)
            {
                var adapter = LoraAdapter.Read(bytes, $"The model zip's {component}'s LoRA adapter '{entry.Stream}'");
                fused.Add(LoraExtensions.Fuse(model, adapter, entry.Scale, entry.Path));
            }
        }
        catch
        {
            for (int i = fused.Count - 1; i >= 0; i--) fused[i].Dispose();
            throw;
        }
    }

    /// <summary>How the adapters are named in messages: their files' names, or "a trained LoRA".</summary>
    public static string Names(IEnumerable<string> paths) => string.Join(", ", paths.Select(p => p.Length == 0 ? "a trained LoRA" : System.IO.Path.GetFileName(p)));

    private static byte[]? ReadStream(ModelLoadContext ctx, string name)
    {
        byte[]? bytes = null;
        bool found = ctx.TryLoadBinaryStream(name, r =>
        {
            using var buffer = new MemoryStream();
            r.BaseStream.CopyTo(buffer);
            bytes = buffer.ToArray();
        });
        return found ? bytes : null;
    }
}
