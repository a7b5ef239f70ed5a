using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// A safetensors file on disk, read one tensor at a time: opening it reads and checks the header only (see
/// <see cref="SafeTensorsHeader"/>: ranges inside the file, sizes that match shapes and dtypes; a truncated file names
/// the first tensor whose bytes are missing), and <see cref="Read"/> reads one tensor's bytes straight from the file
/// into a new tensor's memory, so a file of any size costs only the tensor being read.
/// </summary>
internal sealed class SafeTensorsFile : ITensorFile
{
    private readonly SafeFileHandle _handle;
    private readonly SafeTensorsHeader _header;
    private readonly Dictionary<string, SafeTensorsEntry> _entries;

    private SafeTensorsFile(SafeFileHandle handle, SafeTensorsHeader header, string source)
    {
        _handle = handle;
        _header = header;
        Source = source;
        _entries = new Dictionary<string, SafeTensorsEntry>(StringComparer.Ordinal);
        foreach (var entry in header.Entries)
        {
            if (!_entries.TryAdd(entry.Name, entry)) throw new CheckpointFormatException($"{source} names tensor '{entry.Name}' twice.");
        }
        Names = [.. header.Entries.Select(e => e.Name)];
    }

    /// <summary>Opens <paramref name="path"/> and reads its header; the file stays open until disposed.</summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string source = $"'{path}'";
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var header = SafeTensorsHeader.Read(handle, source);
            return new SafeTensorsFile(handle, header, source);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public string Source { get; }

    public IReadOnlyList<string> Names { get; }

    /// <summary>The header's entries in file order.</summary>
    public IReadOnlyList<SafeTensorsEntry> Entries => _header.Entries;

    /// <summary>The header's <c>__metadata__</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    public bool Contains(string name) => _entries.ContainsKey(name);

    public ScalarType DType(string name) => Entry(name).DType;

    public long[] Shape(string name) => [.. Entry(name).Shape];

    public Tensor Read(string name, ScalarType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var entry = Entry(name);
        using var scope = NewDisposeScope();
        var tensor = empty(entry.Shape, dtype: entry.DType);
        long start = _header.DataStart + entry.Begin;
        TensorBytes.Fill(tensor, (piece, offset) =>
        {
            for (int done = 0; done < piece.Length;)
            {
                int read = RandomAccess.Read(_handle, piece[done..], start + offset + done);
                if (read == 0) throw new CheckpointFormatException($"{Source} is truncated: tensor '{name}' ends past the end of the file.");
                done += read;
            }
        });
        if (dtype is { } type && type != entry.DType) tensor = tensor.to(type);
        return tensor.DetachFromDisposeScope();
    }

    private SafeTensorsEntry Entry(string name) =>
        _entries.TryGetValue(name, out var entry) ? entry : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    public void Dispose() => _handle.Dispose();
}
