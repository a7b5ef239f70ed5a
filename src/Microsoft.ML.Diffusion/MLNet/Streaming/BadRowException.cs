namespace Microsoft.ML.Diffusion.MLNet.Streaming;

/// <summary>A training row that cannot be read, named by its row number and text columns (such as an image path).</summary>
internal sealed class BadRowException(long row, string description, Exception inner)
    : InvalidOperationException($"Training row {row}{(description.Length > 0 ? $" ({description})" : "")} cannot be read: {inner.Message}", inner)
{
    public long Row { get; } = row;
}
