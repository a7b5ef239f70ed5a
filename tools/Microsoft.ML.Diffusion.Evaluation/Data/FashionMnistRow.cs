using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>One Fashion-MNIST image as a row of an ML.NET data view.</summary>
public sealed class FashionMnistRow
{
    /// <summary>The 1×28×28 grey pixels, row-major, values 0–255 (<c>PixelRange.Bytes</c>).</summary>
    [VectorType(1, FashionMnist.ImageSize, FashionMnist.ImageSize)]
    public float[] Pixels { get; set; } = [];

    /// <summary>The class, 0–9 (an index into <see cref="FashionMnist.ClassNames"/>).</summary>
    public int Label { get; set; }

    /// <summary>The class's name, e.g. "Ankle boot".</summary>
    public string ClassName { get; set; } = "";

    /// <summary>A short text prompt for the class, e.g. "an ankle boot".</summary>
    public string Prompt { get; set; } = "";
}
