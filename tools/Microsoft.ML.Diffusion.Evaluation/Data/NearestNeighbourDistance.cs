using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// How close images are to a data set: the RMS pixel distance from each image to its nearest data image.
/// Low for samples that look like the data (and for memorised copies: it does not measure diversity).
/// </summary>
public static class NearestNeighbourDistance
{
    /// <summary>
    /// Mean over <paramref name="images"/> of the RMS distance to the nearest image of <paramref name="data"/>,
    /// in the images' own units. With <paramref name="excludeSelf"/>, image i is data image i and is not its own neighbour.
    /// </summary>
    public static double MeanRms(Tensor images, Tensor data, bool excludeSelf = false)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(data);
        using var scope = NewDisposeScope();
        var a = images.reshape(images.shape[0], -1);
        var b = data.reshape(data.shape[0], -1);
        var d2 = (a.pow(2).sum(1, keepdim: true) - 2 * a.matmul(b.t()) + b.pow(2).sum(1).unsqueeze(0)).clamp_min(0);
        if (excludeSelf) d2 = d2 + eye(a.shape[0], b.shape[0]) * 1e12f;
        return (d2.min(1).values / a.shape[1]).sqrt().mean().item<float>();
    }
}
