using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

public static class Assertions
{
    /// <summary>Each element agrees within a relative or an absolute tolerance (whichever is looser).</summary>
    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double relative, double absolute, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            double diff = Math.Abs(expected[i] - actual[i]);
            double allowed = Math.Max(absolute, relative * Math.Abs(expected[i]));
            Assert.True(diff <= allowed, $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (|diff| {diff:E3} > {allowed:E3})");
        }
    }

    public static void Close(IReadOnlyList<float> expected, IReadOnlyList<float> actual, double relative, double absolute, string what)
        => Close(expected.Select(x => (double)x).ToArray(), actual.Select(x => (double)x).ToArray(), relative, absolute, what);
}
