namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

/// <summary>
/// Tells a leak from a plateau in a series of <see cref="MemoryReading"/>s taken at equal intervals after a warm-up.
/// </summary>
/// <remarks>
/// What is in use after a round of work is a floor plus whatever that round left in caches and pools: the native
/// heap moves by several MiB from round to round with no leak, and resident memory can step up once when an arena
/// fragments. A leak lifts the floor, and keeps lifting it. So the series is cut into thirds and each third's
/// floor (its lowest reading) taken: a measure leaks when the floor rises by more than its budget from the first
/// third to the second <em>and</em> from the second to the third. Transient highs do not move a floor, and a single
/// step moves only one of the two. Live tensors are exact and must not change at all.
/// </remarks>
public static class MemoryTrend
{
    /// <summary>The rise of the floor allowed for each measure from one third of the series to the next.</summary>
    public sealed record Budget(double NativeHeapBytes, double ManagedHeapBytes, double ResidentMiB);

    /// <summary>What leaks, one line a measure; empty when nothing does.</summary>
    public static IReadOnlyList<string> FindLeaks(IReadOnlyList<MemoryReading> readings, Budget budget)
    {
        var leaks = new List<string>();
        long tensors = readings[0].LiveTensors;
        if (readings.Any(r => r.LiveTensors != tensors))
            leaks.Add($"live tensors: {string.Join(" → ", readings.Select(r => r.LiveTensors))}");
        Judge("native heap", readings.Select(r => r.NativeHeapBytes / 1024).ToArray(), budget.NativeHeapBytes / 1024, "KiB", leaks);
        Judge("managed heap", readings.Select(r => r.ManagedHeapBytes / 1024).ToArray(), budget.ManagedHeapBytes / 1024, "KiB", leaks);
        Judge("resident memory", readings.Select(r => r.ResidentMiB).ToArray(), budget.ResidentMiB, "MiB", leaks);
        return leaks;
    }

    /// <summary>The lowest value of each third of the series.</summary>
    public static double[] Floors(IReadOnlyList<double> series)
    {
        if (series.Count < 6 || series.Count % 3 != 0)
            throw new ArgumentException($"A trend needs a multiple of three readings, at least six; got {series.Count}.", nameof(series));
        int third = series.Count / 3;
        return [.. Enumerable.Range(0, 3).Select(k => series.Skip(k * third).Take(third).Min())];
    }

    /// <summary>Whether the floor rises by more than <paramref name="budget"/> from each third to the next.</summary>
    public static bool KeepsRising(IReadOnlyList<double> series, double budget)
    {
        var floors = Floors(series);
        return floors[1] - floors[0] > budget && floors[2] - floors[1] > budget;
    }

    private static void Judge(string measure, double[] series, double budget, string unit, List<string> leaks)
    {
        if (series.Any(double.IsNaN)) return;   // not measurable on this platform
        if (KeepsRising(series, budget))
            leaks.Add($"{measure}: the floor of each third rose by more than {budget:F0} {unit} ({string.Join(" → ", Floors(series).Select(v => v.ToString("F0")))} {unit}) over {string.Join(", ", series.Select(v => v.ToString("F0")))} {unit}");
    }
}
