namespace Microsoft.ML.Diffusion.Pipelines;

/// <summary>The checks of the settings every sampling task shares: the guidance scale and the forward batch size.</summary>
internal static class Guidance
{
    public static void Validate(double guidanceScale, int forwardBatchSize)
    {
        if (!(guidanceScale >= 0) || double.IsInfinity(guidanceScale))
            throw new ArgumentOutOfRangeException("GuidanceScale", guidanceScale, "GuidanceScale must be a non-negative number.");
        if (forwardBatchSize < 1) throw new ArgumentOutOfRangeException("ForwardBatchSize", forwardBatchSize, "ForwardBatchSize must be positive.");
    }
}
