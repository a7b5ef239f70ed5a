namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>The two splits of Fashion-MNIST.</summary>
public enum FashionMnistSplit
{
    /// <summary>The 60,000 training images.</summary>
    Train,

    /// <summary>The 10,000 test images.</summary>
    Test,
}
