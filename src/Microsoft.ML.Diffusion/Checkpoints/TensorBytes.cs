using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// Fills a contiguous CPU tensor's memory in pieces of at most <see cref="ChunkBytes"/> bytes: a span holds under
/// 2 GiB, and a tensor may hold more. Each piece is the memory of a flat view of the tensor.
/// </summary>
internal static class TensorBytes
{
    /// <summary>Receives one piece of the tensor's memory and its byte offset in the tensor.</summary>
    public delegate void Filler(Span<byte> piece, long offset);

    /// <summary>The largest piece; settable so that tests reach the pieced path on small tensors.</summary>
    internal static int ChunkBytes { get; set; } = 1 << 30;

    /// <summary>Calls <paramref name="fill"/> for consecutive pieces that together cover the tensor's bytes.</summary>
    public static void Fill(Tensor tensor, Filler fill)
    {
        if (!tensor.is_contiguous() || tensor.device_type != DeviceType.CPU) throw new ArgumentException("The tensor must be a contiguous CPU tensor.", nameof(tensor));
        long elementSize = tensor.ElementSize, total = tensor.numel() * elementSize;
        if (total <= ChunkBytes)
        {
            fill(tensor.bytes, 0);
            return;
        }
        using var flat = tensor.view(-1);
        long perPiece = Math.Max(1, ChunkBytes / elementSize);
        for (long first = 0; first < flat.shape[0]; first += perPiece)
        {
            using var piece = flat.narrow(0, first, Math.Min(perPiece, flat.shape[0] - first));
            fill(piece.bytes, first * elementSize);
        }
    }
}
