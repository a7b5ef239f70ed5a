namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>The value range of pixels in a float-vector image column.</summary>
public enum PixelRange
{
    /// <summary>0 to 255, what <c>ExtractPixels</c> produces with its default scale and offset.</summary>
    Bytes,
    /// <summary>0 to 1.</summary>
    Unit,
    /// <summary>−1 to 1, the range the model works in.</summary>
    Symmetric,
}
