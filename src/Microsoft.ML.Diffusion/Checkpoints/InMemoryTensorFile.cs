using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// Tensors already read into memory (such as a safetensors file's from <see cref="SafeTensors.Read"/>), offered as an
/// <see cref="ITensorFile"/> so readers of files read them too. It owns the tensors; <see cref="Read"/> hands out copies.
/// </summary>
internal sealed class InMemoryTensorFile : ITensorFile
{
    private readonly Dictionary<string, Tensor> _tensors;

    public InMemoryTensorFile(Dictionary<string, Tensor> tensors, string source)
    {
        _tensors = tensors;
        Source = source;
        Names = [.. tensors.Keys];
    }

    public string Source { get; }

    public IReadOnlyList<string> Names { get; }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public ScalarType DType(string name) => Stored(name).dtype;

    public long[] Shape(string name) => Stored(name).shape;

    public Tensor Read(string name, ScalarType? dtype = null)
    {
        var tensor = Stored(name);
        using var scope = NewDisposeScope();
        var copy = dtype is { } type && type != tensor.dtype ? tensor.to(type) : tensor.clone();
        return copy.DetachFromDisposeScope();
    }

    private Tensor Stored(string name) =>
        _tensors.TryGetValue(name, out var tensor) ? tensor : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    public void Dispose()
    {
        foreach (var tensor in _tensors.Values) tensor.Dispose();
    }
}
