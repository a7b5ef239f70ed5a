namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>A checkpoint file is not a diffusion checkpoint, is truncated or corrupt, or is of a newer format.</summary>
public sealed class CheckpointFormatException : FormatException
{
    /// <summary>Creates the exception with a message that names the problem.</summary>
    public CheckpointFormatException(string message, Exception? inner = null) : base(message, inner) { }
}
