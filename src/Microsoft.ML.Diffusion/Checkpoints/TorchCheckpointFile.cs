using System.IO.Compression;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// A PyTorch checkpoint as torch.save writes it (PyTorch 1.6 and later: a zip of <c>data.pkl</c> and one
/// <c>data/N</c> entry per storage) — Stable Diffusion's <c>.ckpt</c>, diffusers' <c>.bin</c> — read one tensor at a
/// time. The pickle is read with <see cref="RestrictedUnpickler"/>, which runs no code from the file. The state dict
/// is the pickled dict itself, or what its <c>state_dict</c> entry holds (repeatedly, as diffusers' converter looks:
/// Lightning checkpoints keep epoch, global_step, callbacks and optimizer states beside it); those other entries are
/// read as inert values and left out. Inside the state dict every value must be a tensor; plain values (a number, a
/// string) are left out, anything else is refused naming it.
/// </summary>
internal sealed class TorchCheckpointFile : ITensorFile
{
    private const long MaxPickleBytes = 1L << 30;

    private readonly ZipArchive _archive;
    private readonly Dictionary<string, ZipArchiveEntry> _entries;
    private readonly string _root;
    private readonly Dictionary<string, PickledTensor> _tensors;

    private TorchCheckpointFile(ZipArchive archive, string root, Dictionary<string, PickledTensor> tensors, IReadOnlyList<string> names,
                                long? globalStep, IReadOnlyList<string> skipped, string source)
    {
        _archive = archive;
        _entries = archive.Entries.GroupBy(e => e.FullName, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        _root = root;
        _tensors = tensors;
        Names = names;
        GlobalStep = globalStep;
        SkippedEntries = skipped;
        Source = source;
    }

    public string Source { get; }

    public IReadOnlyList<string> Names { get; }

    /// <summary>The checkpoint's top-level <c>global_step</c>, when it has one (diffusers tells SD 2 models apart by it).</summary>
    public long? GlobalStep { get; }

    /// <summary>Entries beside the state dict, and plain values inside it, that were left out (by name).</summary>
    public IReadOnlyList<string> SkippedEntries { get; }

    /// <summary>Opens <paramref name="path"/> and reads its pickle; the file stays open until disposed.</summary>
    public static TorchCheckpointFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string source = $"'{path}'";
        byte[] head = PyTorchFileFormat.ReadHead(path);
        if (PyTorchFileFormat.IsLegacy(head))
            throw new CheckpointFormatException($"{source} was saved in the old PyTorch format (before PyTorch 1.6, or with _use_new_zipfile_serialization=False), which this library cannot read; save the state dict again with a current torch.save, or as safetensors.");
        if (!PyTorchFileFormat.IsZip(head))
            throw new CheckpointFormatException($"{source} is not a PyTorch checkpoint: it is neither the zip archive torch.save writes nor PyTorch's old format.");
        var stream = File.OpenRead(path);
        ZipArchive? archive = null;
        try
        {
            archive = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false);
            var pickleEntry = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
                ?? throw new CheckpointFormatException($"{source} is a zip archive without the data.pkl torch.save writes; it is not a PyTorch checkpoint.");
            string root = pickleEntry.FullName[..^"data.pkl".Length];
            CheckByteOrder(archive, root, source);
            if (pickleEntry.Length > MaxPickleBytes) throw new CheckpointFormatException($"{source} has a {pickleEntry.Length}-byte pickle, too large for a state dict.");
            var pickle = new byte[pickleEntry.Length];
            using (var data = pickleEntry.Open()) data.ReadExactly(pickle);
            var top = RestrictedUnpickler.Load(pickle, source);
            var (tensors, names, globalStep, skipped) = StateDict(top, source);
            return new TorchCheckpointFile(archive, root, tensors, names, globalStep, skipped, source);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            archive?.Dispose();
            stream.Dispose();
            throw new CheckpointFormatException($"{source} is a damaged or truncated zip archive: {e.Message}", e);
        }
        catch
        {
            archive?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    private static void CheckByteOrder(ZipArchive archive, string root, string source)
    {
        var entry = archive.GetEntry(root + "byteorder");
        if (entry is null) return;   // torch before 2.1 writes none: little-endian
        using var reader = new StreamReader(entry.Open());
        string order = reader.ReadToEnd().Trim();
        if (order != "little") throw new CheckpointFormatException($"{source} holds {order}-endian tensors; this library reads little-endian ones only.");
    }

    private static (Dictionary<string, PickledTensor>, List<string>, long?, List<string>) StateDict(object? top, string source)
    {
        var skipped = new List<string>();
        long? globalStep = null;
        var dict = top as OrderedDictionary<object, object?>
            ?? throw new CheckpointFormatException($"{source} holds {RestrictedUnpickler.Describe(top)}, not a state dict.");
        if (dict.TryGetValue("global_step", out var step) && step is long n) globalStep = n;
        while (dict.TryGetValue("state_dict", out var inner))
        {
            skipped.AddRange(dict.Keys.Where(k => k is not "state_dict").Select(k => k.ToString() ?? "?"));
            dict = inner as OrderedDictionary<object, object?>
                ?? throw new CheckpointFormatException($"{source} has a 'state_dict' entry that holds {RestrictedUnpickler.Describe(inner)}, not a state dict.");
        }
        var tensors = new Dictionary<string, PickledTensor>(StringComparer.Ordinal);
        var names = new List<string>();
        foreach (var (key, value) in dict)
        {
            if (key is not string name)
                throw new CheckpointFormatException($"{source} has a state dict key {RestrictedUnpickler.Describe(key)}, where names are strings.");
            switch (value)
            {
                case PickledTensor tensor:
                    tensors[name] = tensor;
                    names.Add(name);
                    break;
                case null or bool or long or double or string or System.Numerics.BigInteger:
                    skipped.Add(name);
                    break;
                default:
                    throw new CheckpointFormatException($"{source} has '{name}' in its state dict holding {RestrictedUnpickler.Describe(value)}, not a tensor.");
            }
        }
        return (tensors, names, globalStep, skipped);
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public ScalarType DType(string name) => Tensor(name).Storage.DType;

    public long[] Shape(string name) => [.. Tensor(name).Shape];

    public Tensor Read(string name, ScalarType? dtype = null)
    {
        var t = Tensor(name);
        string entryName = $"{_root}data/{t.Storage.Key}";
        var entry = _entries.GetValueOrDefault(entryName)
            ?? throw new CheckpointFormatException($"{Source} lacks {entryName}, the storage of tensor '{name}'.");
        long elementSize = SafeTensorsHeader.ElementSize(t.Storage.DType);
        long numel = t.Shape.Aggregate(1L, (a, b) => a * b);
        // The storage elements the view touches: from its offset to its farthest element.
        long extent = numel == 0 ? 0 : 1 + t.Shape.Zip(t.Stride, (size, stride) => (size - 1) * stride).Sum();
        if ((t.Offset + extent) * elementSize > entry.Length)
            throw new CheckpointFormatException($"{Source} is truncated: tensor '{name}' needs {(t.Offset + extent) * elementSize} bytes of {entryName}, which has {entry.Length}.");
        using var scope = NewDisposeScope();
        bool contiguous = extent == numel && IsContiguous(t.Shape, t.Stride);
        var raw = empty(contiguous ? t.Shape : [extent], dtype: t.Storage.DType);
        using (var data = entry.Open())
        {
            Skip(data, t.Offset * elementSize, name);
            try
            {
                TensorBytes.Fill(raw, (piece, _) => data.ReadExactly(piece));
            }
            catch (EndOfStreamException e)
            {
                throw new CheckpointFormatException($"{Source} is truncated: the storage of tensor '{name}' ends early.", e);
            }
        }
        var tensor = contiguous ? raw : raw.as_strided(t.Shape, t.Stride, 0).contiguous();
        if (dtype is { } type && type != tensor.dtype) tensor = tensor.to(type);
        return tensor.DetachFromDisposeScope();
    }

    private void Skip(Stream data, long bytes, string name)
    {
        if (bytes == 0) return;
        if (data.CanSeek)
        {
            data.Seek(bytes, SeekOrigin.Current);
            return;
        }
        var buffer = new byte[(int)Math.Min(bytes, 1 << 20)];
        for (long left = bytes; left > 0;)
        {
            int read = data.Read(buffer, 0, (int)Math.Min(left, buffer.Length));
            if (read == 0) throw new CheckpointFormatException($"{Source} is truncated: the storage of tensor '{name}' ends early.");
            left -= read;
        }
    }

    private static bool IsContiguous(long[] shape, long[] stride)
    {
        long expected = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] != 1 && stride[d] != expected) return false;
            expected *= shape[d];
        }
        return true;
    }

    private PickledTensor Tensor(string name) =>
        _tensors.TryGetValue(name, out var tensor) ? tensor : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    public void Dispose() => _archive.Dispose();
}
