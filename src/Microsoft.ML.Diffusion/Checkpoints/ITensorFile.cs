using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// A weights file read one tensor at a time, so a loader can copy tensor by tensor into a module and never hold a
/// second copy of the model: names, dtypes and shapes come from the file's index, bytes only when a tensor is read.
/// </summary>
internal interface ITensorFile : IDisposable
{
    /// <summary>Names the file in error messages (its path in quotes).</summary>
    string Source { get; }

    /// <summary>The tensors' names in the file's order.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Whether the file has a tensor of this name.</summary>
    bool Contains(string name);

    /// <summary>The stored dtype of a tensor.</summary>
    ScalarType DType(string name);

    /// <summary>The shape of a tensor.</summary>
    long[] Shape(string name);

    /// <summary>
    /// A new CPU tensor (owned by the caller, outside any dispose scope) with the stored values, converted to
    /// <paramref name="dtype"/> when one is given.
    /// </summary>
    Tensor Read(string name, ScalarType? dtype = null);
}
