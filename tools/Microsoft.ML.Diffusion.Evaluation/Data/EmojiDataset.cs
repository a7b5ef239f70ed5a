using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// Emoji as text/image pairs, from the npm package <c>emoji-datasource-google</c> (version
/// <see cref="PackageVersion"/>): emoji.json's names and subcategories as captions, and Google's 64×64
/// RGBA PNGs as images. Only the top-level emoji are used: skin-tone variations repeat an image's shape
/// with another colour and would only weight the hand and person emoji more.
/// </summary>
public static class EmojiDataset
{
    /// <summary>Where <c>eng/install-data.sh</c> installs the package.</summary>
    public const string DefaultDirectory = "/usr/local/share/mldiffusion/node_modules/emoji-datasource-google";

    /// <summary>The environment variable that, when set, overrides <see cref="DefaultDirectory"/>.</summary>
    public const string DirectoryVariable = "EMOJI_DATASOURCE_DIR";

    /// <summary>The package version the samples were written against.</summary>
    public const string PackageVersion = "16.0.0";

    /// <summary>The catalogue file, at the top of the package.</summary>
    public const string CatalogFileName = "emoji.json";

    /// <summary>The folder of the 64×64 PNGs, relative to the package (Google's design).</summary>
    public const string ImageSubdirectory = "img/google/64";

    /// <summary>Images are <see cref="ImageSize"/>×<see cref="ImageSize"/>.</summary>
    public const int ImageSize = 64;

    /// <summary>Most words in a caption unless told otherwise (the library's default prompt length).</summary>
    public const int DefaultMaxTokens = 16;

    /// <summary>How to install the data.</summary>
    public const string InstallHint = "install it with 'bash eng/install-data.sh' (npm package emoji-datasource-google@" + PackageVersion + "), or set " + DirectoryVariable + " to a copy of that package";

    /// <summary>The folder searched: <see cref="DirectoryVariable"/> when set, otherwise <see cref="DefaultDirectory"/>.</summary>
    public static string ResolveDirectory(string? directory = null)
        => directory ?? (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } env ? env : DefaultDirectory);

    /// <summary>
    /// Whether emoji.json and the image folder are present; when not, <paramref name="reason"/> says which
    /// is missing and how to install the data.
    /// </summary>
    public static bool IsAvailable(out string reason, string? directory = null)
    {
        string dir = ResolveDirectory(directory);
        string catalog = Path.Combine(dir, CatalogFileName), images = Path.Combine(dir, ImageSubdirectory);
        if (!File.Exists(catalog))
        {
            reason = $"The emoji data is not installed: '{catalog}' is missing; {InstallHint}.";
            return false;
        }
        if (!Directory.Exists(images))
        {
            reason = $"The emoji data is incomplete: the image folder '{images}' is missing; {InstallHint}.";
            return false;
        }
        reason = $"The emoji data is installed in '{dir}'.";
        return true;
    }

    /// <summary>
    /// Lower-case words for a tokenizer: accents removed, anything but letters and digits turned into
    /// spaces, runs of spaces collapsed. "Côte d’Ivoire Flag" → "cote d ivoire flag".
    /// </summary>
    public static string NormalizeText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new StringBuilder(text.Length);
        bool space = false;
        foreach (char c in text.Normalize(NormalizationForm.FormD))
        {
            if (CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.NonSpacingMark) continue;   // the accent of a decomposed letter
            if (char.IsLetterOrDigit(c))
            {
                if (space && result.Length > 0) result.Append(' ');
                result.Append(char.ToLowerInvariant(c));
                space = false;
            }
            else
            {
                space = true;
            }
        }
        return result.ToString();
    }

    /// <summary>
    /// The caption of an emoji: the name's words, then the subcategory's words not already in it, at most
    /// <paramref name="maxTokens"/> words. ("GRINNING FACE", "face-smiling") → "grinning face smiling".
    /// </summary>
    /// <remarks>
    /// The subcategory words are shared by related emoji ("animal mammal", "food fruit"), which gives the
    /// text encoder something in common between the many names that occur only once.
    /// </remarks>
    public static string MakeCaption(string name, string? subcategory, int maxTokens = DefaultMaxTokens)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "maxTokens must be positive.");
        var words = NormalizeText(name).Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
        foreach (string word in NormalizeText(subcategory ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries))
            if (!words.Contains(word)) words.Add(word);
        return string.Join(' ', words.Take(maxTokens));
    }

    /// <summary>
    /// The emoji with a Google image, in emoji.json's <c>sort_order</c> (the order of emoji pickers:
    /// smileys first, flags last). Entries whose <c>has_img_google</c> is false or whose PNG is missing
    /// are skipped.
    /// </summary>
    /// <param name="directory">The package folder; null uses <see cref="ResolveDirectory"/>.</param>
    /// <param name="maxItems">Keep at most this many emoji (the first in order, after <paramref name="include"/>); null keeps all.</param>
    /// <param name="maxTokens">Most words per caption.</param>
    /// <param name="include">
    /// Emoji kept even when <paramref name="maxItems"/> trims the list, each named by its name (in any
    /// case, e.g. "grinning face") or one of its short names; a name not in the data is an error.
    /// </param>
    public static IReadOnlyList<EmojiRow> Load(string? directory = null, int? maxItems = null, int maxTokens = DefaultMaxTokens,
        IEnumerable<string>? include = null)
    {
        if (maxItems is < 1) throw new ArgumentOutOfRangeException(nameof(maxItems), maxItems, "maxItems must be positive.");
        if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "maxTokens must be positive.");
        string dir = ResolveDirectory(directory);
        string catalog = Path.Combine(dir, CatalogFileName);
        if (!IsAvailable(out string reason, dir))
            throw new FileNotFoundException(reason, File.Exists(catalog) ? Path.Combine(dir, ImageSubdirectory) : catalog);

        var entries = ReadCatalog(catalog, Path.GetFullPath(Path.Combine(dir, ImageSubdirectory)));
        if (entries.Count == 0)
            throw new InvalidDataException($"'{catalog}' lists no emoji whose Google image exists in '{Path.Combine(dir, ImageSubdirectory)}'; reinstall the data ({InstallHint}).");
        entries.Sort((a, b) => a.SortOrder != b.SortOrder ? a.SortOrder.CompareTo(b.SortOrder) : string.CompareOrdinal(a.Row.ImagePath, b.Row.ImagePath));

        var chosen = entries;
        var wanted = include?.ToList() ?? [];
        if (wanted.Count > 0 || maxItems is not null)
        {
            var keep = new HashSet<Entry>(ReferenceEqualityComparer.Instance);
            foreach (string name in wanted)
                keep.Add(Find(entries, name, catalog));
            if (maxItems is int max && keep.Count > max)
                throw new ArgumentException($"include names {keep.Count} emoji, more than maxItems ({max}).", nameof(include));
            int limit = maxItems ?? int.MaxValue;
            foreach (var entry in entries)
            {
                if (keep.Count >= limit) break;
                keep.Add(entry);
            }
            chosen = entries.Where(keep.Contains).ToList();
        }
        foreach (var entry in chosen)
            entry.Row.Caption = MakeCaption(entry.Row.Name, entry.Row.Subcategory, maxTokens);
        return chosen.Select(e => e.Row).ToArray();
    }

    /// <summary>
    /// The emoji as an ML.NET data view with Text columns ImagePath (absolute, for
    /// <c>ml.Transforms.LoadImages("Image", null, "ImagePath")</c>), Name, ShortName, Category,
    /// Subcategory and Caption (for <c>TokenizeIntoWords</c>). The parameters are those of <see cref="Load"/>.
    /// </summary>
    public static IDataView LoadDataView(MLContext ml, string? directory = null, int? maxItems = null, int maxTokens = DefaultMaxTokens,
        IEnumerable<string>? include = null)
    {
        ArgumentNullException.ThrowIfNull(ml);
        return ml.Data.LoadFromEnumerable(Load(directory, maxItems, maxTokens, include));
    }

    private sealed record Entry(EmojiRow Row, long SortOrder, string[] ShortNames);

    private static Entry Find(List<Entry> entries, string name, string catalog)
    {
        ArgumentNullException.ThrowIfNull(name);
        string normalized = NormalizeText(name);
        return entries.FirstOrDefault(e => NormalizeText(e.Row.Name) == normalized)
            ?? entries.FirstOrDefault(e => e.ShortNames.Contains(name, StringComparer.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"No emoji with a Google image is named '{name}' in '{catalog}' (give its name, e.g. 'grinning face', or a short name, e.g. 'grinning').", nameof(name));
    }

    private static List<Entry> ReadCatalog(string catalog, string imageFolder)
    {
        JsonDocument document;
        try
        {
            using var stream = File.OpenRead(catalog);
            document = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{catalog}' is not valid JSON ({e.Message}); reinstall the data ({InstallHint}).", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"'{catalog}' should hold a JSON array of emoji, but its root is {document.RootElement.ValueKind}.");
            var entries = new List<Entry>();
            int index = 0;
            foreach (var item in document.RootElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"'{catalog}': entry {index} is {item.ValueKind}, not an object.");
                string name = RequiredString(item, "name", catalog, index);
                string image = RequiredString(item, "image", catalog, index);
                // Skin-tone variations live in each entry's "skin_variations" and are not read.
                bool hasImage = !item.TryGetProperty("has_img_google", out var flag) || flag.ValueKind != JsonValueKind.False;
                string path = Path.Combine(imageFolder, image);
                if (hasImage && File.Exists(path))
                {
                    long order = item.TryGetProperty("sort_order", out var o) && o.TryGetInt64(out long v) ? v : long.MaxValue;
                    string shortName = OptionalString(item, "short_name");
                    var shortNames = item.TryGetProperty("short_names", out var names) && names.ValueKind == JsonValueKind.Array
                        ? names.EnumerateArray().Where(n => n.ValueKind == JsonValueKind.String).Select(n => n.GetString()!).ToArray()
                        : [shortName];
                    entries.Add(new Entry(new EmojiRow
                    {
                        ImagePath = path,
                        Name = name,
                        ShortName = shortName,
                        Category = OptionalString(item, "category"),
                        Subcategory = OptionalString(item, "subcategory"),
                    }, order, shortNames));
                }
                index++;
            }
            return entries;
        }
    }

    private static string RequiredString(JsonElement item, string property, string catalog, int index)
        => item.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text
            ? text
            : throw new InvalidDataException($"'{catalog}': entry {index} has no \"{property}\" string.");

    private static string OptionalString(JsonElement item, string property)
        => item.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() ?? "" : "";
}
