using System.Globalization;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// The values of a comma-separated option (<c>--multipliers 1,2,2</c>). Every element must be there: "1,,2" or "1,2,"
/// is a usage error naming the option, not a shorter list.
/// </summary>
internal static class CommaList
{
    /// <summary>The trimmed elements of <paramref name="text"/>; none for blank text (the caller decides whether that is allowed).</summary>
    public static string[] Split(string text, string option)
    {
        if (string.IsNullOrWhiteSpace(text)) return [];
        string[] parts = text.Split(',', StringSplitOptions.TrimEntries);
        int empty = Array.IndexOf(parts, "");
        if (empty >= 0)
            throw new UsageException($"{option} has an empty element (element {empty + 1} of {parts.Length}) in '{text}'; give comma-separated values without gaps.");
        return parts;
    }

    /// <summary>Whole numbers from <paramref name="min"/> to <paramref name="max"/>; <paramref name="example"/> shows a valid list in errors.</summary>
    public static int[] Integers(string text, string option, int min, int max, string example)
    {
        string[] parts = Split(text, option);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < min || values[i] > max)
                throw new UsageException($"{option} must be comma-separated whole numbers from {min} to {max} (like {example}), not '{text}'.");
        return values;
    }
}
