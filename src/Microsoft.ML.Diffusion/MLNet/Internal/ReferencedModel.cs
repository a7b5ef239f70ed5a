using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet.Internal;

/// <summary>
/// Models loaded from the files people download (a Stable Diffusion folder) are saved in model zips by reference: the
/// folder's path and the SHA-256 of its files, not gigabytes of copied weights. Loading such a zip finds the files
/// again and refuses them, naming the path, when they are missing or have changed since the zip was saved.
/// </summary>
internal static class ReferencedModel
{
    public const string SourceStream = "DiffusionModelSource.json";

    public static void Save(ModelSaveContext ctx, DiffusionModel model)
    {
        var source = model.Source ?? throw new InvalidOperationException("The model has no source files to refer to.");
        // The zip refers to the checkpoint's files; weights changed in memory would be silently lost.
        var fused = Adapters.LoraFusion.Of(model).Fused;
        if (fused.Count > 0)
            throw new InvalidOperationException(
                $"This Stable Diffusion model has LoRA adapters fused into it ({string.Join(", ", fused.Select(f => f.Path.Length == 0 ? "a trained LoRA" : Path.GetFileName(f.Path)))}), but a model zip refers to the checkpoint's files and cannot hold them yet. Unfuse them before saving.");
        var saved = source with { Sha256 = Checksum(source) };
        ctx.SaveBinaryStream(SourceStream, w => w.Write(JsonSerializer.SerializeToUtf8Bytes(saved, DiffusionCheckpoint.JsonOptions)));
    }

    /// <summary>The referenced model when the stage holds a reference, null when it holds a checkpoint of its own.</summary>
    public static DiffusionModel? TryLoad(ModelLoadContext ctx, Device device, string component)
    {
        ModelSource? source = null;
        bool found = ctx.TryLoadBinaryStream(SourceStream, r =>
        {
            using var buffer = new MemoryStream();
            r.BaseStream.CopyTo(buffer);
            try
            {
                source = JsonSerializer.Deserialize<ModelSource>(buffer.ToArray(), DiffusionCheckpoint.JsonOptions);
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException($"The model zip's {component} has a corrupt model reference: {e.Message}", e);
            }
        });
        if (!found) return null;
        if (source is null) throw new CheckpointFormatException($"The model zip's {component} has an empty model reference.");
        if (!Directory.Exists(source.Path) && !File.Exists(source.Path))
            throw new CheckpointFormatException($"The model zip's {component} refers to the Stable Diffusion model '{source.Path}', which does not exist here; the zip holds a reference to it, not a copy. Put the model at that path.");
        string actual = Checksum(source);
        if (!string.Equals(actual, source.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new CheckpointFormatException($"The model zip's {component} refers to '{source.Path}', whose files have changed since the zip was saved (SHA-256 {actual[..12]}…, saved {source.Sha256?[..Math.Min(12, source.Sha256.Length)]}…).");
        return Load(source, device);
    }

    /// <summary>The same model loaded again onto <paramref name="device"/>.</summary>
    public static DiffusionModel Load(ModelSource source, Device device) => source.Kind switch
    {
        ModelSource.DiffusersFolder => StableDiffusionFormat.Load(source.Path, device),
        ModelSource.SingleFile => StableDiffusionFormat.Load(source.Path, device, source.TokenizerFolder),
        _ => throw new CheckpointFormatException($"A model reference of kind '{source.Kind}' is not known to this version of the library."),
    };

    /// <summary>SHA-256 over the model's files: each file's path relative to the model and its bytes, in name order.</summary>
    public static string Checksum(ModelSource source)
    {
        var files = source.Kind == ModelSource.DiffusersFolder ? StableDiffusionPipelineFolder.WeightFiles(source.Path).ToList() : [source.Path];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (var file in files)
        {
            string relative = Path.GetRelativePath(Directory.Exists(source.Path) ? source.Path : Path.GetDirectoryName(source.Path)!, file).Replace('\\', '/');
            hash.AppendData(Encoding.UTF8.GetBytes(relative + "\n"));
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) hash.AppendData(buffer, 0, read);
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }
}
