using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Benchmarks;

// The JSON written here has the same fields as benchmarks/pytorch/ddpm_reference.py's, so that
// benchmarks/compare.py can put the two side by side. Names are snake_case in the file.

internal sealed record VersionsInfo(
    string Implementation, string Framework, string FrameworkVersion, string Libtorch, string Runtime,
    int TorchThreads, int? InteropThreads, string Os, string Cpu, int LogicalCores, string? Note);

internal sealed record TimingStats(int Count, double MedianS, double MeanS, double MinS, double MaxS)
{
    public static TimingStats From(IReadOnlyList<double> seconds)
    {
        if (seconds.Count == 0) return new(0, double.NaN, double.NaN, double.NaN, double.NaN);
        var sorted = seconds.Order().ToArray();
        int n = sorted.Length;
        double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        return new(n, median, sorted.Average(), sorted[0], sorted[^1]);
    }
}

internal sealed record NetworkInfo(int ImageChannels, int ImageSize, int BaseChannels, int[] ChannelMultipliers,
    int ResidualBlocksPerLevel, int[] AttentionResolutions, int AttentionHeads, int NormGroups);

internal sealed record TrainResult(int Batch, int WarmupSteps, TimingStats Step, double FinalLoss, double MinorFaultsPerStep);

/// <summary>Median seconds per training step of each phase, measured on a hand-written copy of TrainStep.</summary>
internal sealed record BreakdownResult(int Steps, int Batch, double DataS, double ForwardS, double BackwardS, double ClipS,
    double OptimizerS, double EmaS, double OtherS, double TotalS, double ForwardInferenceS);

internal sealed record SamplerResult(string Name, string Sampler, int Steps, int Batch, int TimedSteps, bool Extrapolated,
    double SPerStep, double TotalS, double SPerImage, double MinorFaultsPerStep);

internal sealed record ConfigResult(string Name, string Description, int[] Image, NetworkInfo Network, long Params,
    TrainResult Train, BreakdownResult? Breakdown, SamplerResult[] Samplers, double PeakRssMb, string? Note);

internal sealed record BenchmarkReport(string Implementation, string Mode, string Timestamp, VersionsInfo Versions, ConfigResult[] Configs);

internal sealed record SoakResult(string Implementation, string Timestamp, VersionsInfo Versions, string Network, int Batch,
    int TrainSteps, int SamplingRuns, string Sampling, double RssAfterWarmupMb, double RssEndMb, double GrowthPercent,
    double MaxGrowthPercent, bool Passed, double PeakRssMb, double[][] RssTrace, double Seconds);

internal static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static void Write<T>(string path, T value)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, JsonSerializer.Serialize(value, Options) + "\n");
    }

    public static T? Read<T>(string path) => JsonSerializer.Deserialize<T>(File.ReadAllText(path), Options);
}
