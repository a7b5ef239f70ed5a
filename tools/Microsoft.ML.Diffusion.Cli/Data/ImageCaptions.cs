using System.Text.Json;

namespace Microsoft.ML.Diffusion.Cli.Data;

/// <summary>A row naming an image file relative to the image folder and its caption, for LoadImages and a caption column.</summary>
public sealed class CaptionedImageFileRow
{
    public string Path { get; set; } = "";
    public string Caption { get; set; } = "";
}

/// <summary>
/// The caption of each training image, from a captions file and from text files beside the images.
/// A captions file has a line per image: its path relative to the image folder, a tab, the caption (<c>cat.png	a
/// black cat</c>; blank lines and lines starting with # are skipped); a <c>.jsonl</c> file is Hugging Face's image-folder
/// metadata instead, an object per line with <c>file_name</c> and <c>text</c>. An image the file does not name takes the
/// text of the <c>.txt</c> file with its stem beside it (<c>cat.png</c> → <c>cat.txt</c>, Kohya's dataset layout),
/// line breaks read as spaces.
/// </summary>
internal static class ImageCaptions
{
    /// <summary>The caption of each of <paramref name="files"/> (relative to <paramref name="folder"/>), in order; usage errors name what is missing or wrong.</summary>
    public static string[] Read(string folder, IReadOnlyList<string> files, string? captionsFile)
    {
        var named = captionsFile is null ? new Dictionary<string, string>(StringComparer.Ordinal) : ReadFile(captionsFile, folder);
        var captions = new string[files.Count];
        var missing = new List<string>();
        for (int i = 0; i < files.Count; i++)
        {
            string key = Key(files[i]);
            if (named.TryGetValue(key, out string? caption))
            {
                captions[i] = caption;
                continue;
            }
            string beside = Path.Combine(folder, Path.ChangeExtension(files[i], ".txt"));
            if (File.Exists(beside)) captions[i] = Clean(File.ReadAllText(beside));
            else missing.Add(files[i]);
        }
        if (missing.Count > 0)
        {
            string which = string.Join(", ", missing.Take(3).Select(f => $"'{f}'")) + (missing.Count > 3 ? $" and {missing.Count - 3} more" : "");
            throw new UsageException($"{missing.Count} of {files.Count} images {(missing.Count == 1 ? "has" : "have")} no caption: {which}. A Stable Diffusion model trains on captioned images: "
                + $"put a .txt file with the same name beside each image (e.g. '{Path.ChangeExtension(missing[0], ".txt")}'), or list them in --captions as '<file>\\t<caption>' lines.");
        }
        return captions;
    }

    // Paths compare with forward slashes, as a captions file written on any system names them.
    private static string Key(string relativePath) => relativePath.Replace('\\', '/');

    private static string Clean(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static Dictionary<string, string> ReadFile(string path, string folder)
    {
        if (!File.Exists(path)) throw new UsageException($"Captions file '{path}' does not exist.");
        bool json = path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
        var captions = new Dictionary<string, string>(StringComparer.Ordinal);
        string[] lines = File.ReadAllLines(path);
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n];
            if (line.Trim().Length == 0 || (!json && line.StartsWith('#'))) continue;
            string where = $"Captions file '{path}', line {n + 1}";
            var (file, caption) = json ? JsonEntry(line, where) : TabEntry(line, where);
            string key = Key(file.Trim());
            if (!File.Exists(Path.Combine(folder, key)))
                throw new UsageException($"{where} names '{key}', which is not in the image folder '{folder}' (give paths relative to it).");
            if (!captions.TryAdd(key, Clean(caption)))
                throw new UsageException($"{where} names '{key}' a second time.");
        }
        return captions;
    }

    private static (string File, string Caption) TabEntry(string line, string where)
    {
        int tab = line.IndexOf('\t');
        if (tab <= 0) throw new UsageException($"{where} is not '<image file><tab><caption>': \"{Shorten(line)}\".");
        return (line[..tab], line[(tab + 1)..]);
    }

    private static (string File, string Caption) JsonEntry(string line, string where)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("file_name", out var file) && file.ValueKind == JsonValueKind.String
                && doc.RootElement.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String)
                return (file.GetString()!, text.GetString()!);
        }
        catch (JsonException)
        {
        }
        throw new UsageException($"{where} is not a JSON object with \"file_name\" and \"text\" strings: \"{Shorten(line)}\".");
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";
}
