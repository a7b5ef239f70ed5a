using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.SampleData;
using SkiaSharp;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.Diffusion.Tests.SampleData;

public sealed class EmojiDatasetTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-emoji-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("GRINNING FACE", "grinning face")]
    [InlineData("  Côte d’Ivoire   Flag!! ", "cote d ivoire flag")]
    [InlineData("T-REX", "t rex")]
    [InlineData("Antigua & Barbuda Flag", "antigua barbuda flag")]
    [InlineData("KEYCAP 10", "keycap 10")]
    [InlineData("--", "")]
    public void NormalizeTextGivesLowerCaseWordsSeparatedBySingleSpaces(string text, string expected)
        => Assert.Equal(expected, EmojiDataset.NormalizeText(text));

    [Fact]
    public void CaptionsAreTheNameThenNewSubcategoryWordsAndTokenizeCleanly()
    {
        Assert.Equal("grinning face smiling", EmojiDataset.MakeCaption("GRINNING FACE", "face-smiling"));
        Assert.Equal("dog face animal mammal", EmojiDataset.MakeCaption("DOG FACE", "animal-mammal"));
        Assert.Equal("smiling face with smiling eyes", EmojiDataset.MakeCaption("SMILING FACE WITH SMILING EYES", "face-smiling"));
        Assert.Equal("heavy black heart", EmojiDataset.MakeCaption("HEAVY BLACK HEART", "heart"));
        Assert.Equal("rocket", EmojiDataset.MakeCaption("ROCKET", null));
        Assert.Equal("clockwise rightwards and", EmojiDataset.MakeCaption("CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS", "arrow", maxTokens: 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmojiDataset.MakeCaption("ROCKET", null, maxTokens: 0));

        // ML.NET's tokenizer splits a caption into exactly its words.
        string[] captions = ["cote d ivoire flag country", "grinning face smiling"];
        var ml = new MLContext(seed: 1);
        var view = ml.Transforms.Text.TokenizeIntoWords("Tokens", "Caption")
            .Fit(ml.Data.LoadFromEnumerable(captions.Select(c => new EmojiRow { Caption = c })))
            .Transform(ml.Data.LoadFromEnumerable(captions.Select(c => new EmojiRow { Caption = c })));
        var tokens = view.GetColumn<VBuffer<ReadOnlyMemory<char>>>("Tokens").Select(v => v.DenseValues().Select(t => t.ToString()).ToArray()).ToArray();
        Assert.Equal(captions.Select(c => c.Split(' ')), tokens);
    }

    [Fact]
    public void LoadsTopLevelEmojiWithImagesInSortOrder()
    {
        WritePackage(
            Entry("GRINNING FACE", "grinning", "face-smiling", "1f600.png", sortOrder: 2,
                skinVariations: new Dictionary<string, object> { ["1F3FB"] = new { image = "1f600-1f3fb.png" } }),
            Entry("Côte d’Ivoire Flag", "flag-ci", "country-flag", "1f1e8-1f1ee.png", sortOrder: 1, category: "Flags"),
            Entry("NO GOOGLE IMAGE", "none", "other", "2000.png", sortOrder: 0, hasGoogle: false),
            Entry("FILE MISSING", "missing", "other", "2001.png", sortOrder: 0, writeImage: false),
            Entry("DOG FACE", "dog", "animal-mammal", "1f436.png", sortOrder: 3));
        WritePng("1f600-1f3fb.png");
        Assert.True(EmojiDataset.IsAvailable(out string reason, _dir), reason);

        var rows = EmojiDataset.Load(_dir);
        Assert.Equal(["Côte d’Ivoire Flag", "GRINNING FACE", "DOG FACE"], rows.Select(r => r.Name));
        Assert.Equal(["cote d ivoire flag country", "grinning face smiling", "dog face animal mammal"], rows.Select(r => r.Caption));
        var grinning = rows[1];
        Assert.Equal(Path.Combine(_dir, "img", "google", "64", "1f600.png"), grinning.ImagePath);
        Assert.True(Path.IsPathFullyQualified(grinning.ImagePath));
        Assert.Equal("grinning", grinning.ShortName);
        Assert.Equal("Smileys & Emotion", grinning.Category);
        Assert.Equal("face-smiling", grinning.Subcategory);

        // maxItems keeps the first in order, after the emoji named in include (by name or short name).
        Assert.Equal(["Côte d’Ivoire Flag"], EmojiDataset.Load(_dir, maxItems: 1).Select(r => r.Name));
        Assert.Equal(["DOG FACE"], EmojiDataset.Load(_dir, maxItems: 1, include: ["dog"]).Select(r => r.Name));
        Assert.Equal(["Côte d’Ivoire Flag", "DOG FACE"], EmojiDataset.Load(_dir, maxItems: 2, include: ["Dog Face"]).Select(r => r.Name));
        Assert.Equal("grinning face", EmojiDataset.Load(_dir, maxTokens: 2)[1].Caption);
        var unknown = Assert.Throws<ArgumentException>(() => EmojiDataset.Load(_dir, include: ["unicorn face"]));
        Assert.Contains("'unicorn face'", unknown.Message);
        Assert.Contains("emoji.json", unknown.Message);
        Assert.Throws<ArgumentException>(() => EmojiDataset.Load(_dir, maxItems: 1, include: ["dog", "grinning"]));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmojiDataset.Load(_dir, maxItems: 0));

        // A data view whose ImagePath column LoadImages reads without an image folder.
        var ml = new MLContext(seed: 1);
        var view = EmojiDataset.LoadDataView(ml, _dir);
        foreach (string column in new[] { "ImagePath", "Name", "ShortName", "Category", "Subcategory", "Caption" })
            Assert.Equal(TextDataViewType.Instance, view.Schema[column].Type);
        var widths = ml.Transforms.LoadImages("Image", imageFolder: null, "ImagePath").Fit(view).Transform(view)
            .GetColumn<MLImage>("Image").Select(i => i.Width).ToList();   // the cursor disposes each image as it moves on
        Assert.Equal([8, 8, 8], widths);
    }

    [Fact]
    public void TheDirectoryVariableOverridesTheDefault()
    {
        string? before = Environment.GetEnvironmentVariable(EmojiDataset.DirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(EmojiDataset.DirectoryVariable, _dir);
            Assert.Equal(_dir, EmojiDataset.ResolveDirectory());
            Assert.Equal("elsewhere", EmojiDataset.ResolveDirectory("elsewhere"));
            Environment.SetEnvironmentVariable(EmojiDataset.DirectoryVariable, null);
            Assert.Equal(EmojiDataset.DefaultDirectory, EmojiDataset.ResolveDirectory());
        }
        finally
        {
            Environment.SetEnvironmentVariable(EmojiDataset.DirectoryVariable, before);
        }
    }

    [Fact]
    public void MissingOrBrokenFilesAreNamed()
    {
        string empty = Path.Combine(_dir, "nothing-here");
        Assert.False(EmojiDataset.IsAvailable(out string reason, empty));
        Assert.Contains(Path.Combine(empty, "emoji.json"), reason);
        Assert.Contains("install-data.sh", reason);
        Assert.Contains("emoji-datasource-google@16.0.0", reason);
        var missing = Assert.Throws<FileNotFoundException>(() => EmojiDataset.Load(empty));
        Assert.Contains("install-data.sh", missing.Message);

        // emoji.json without the image folder.
        File.WriteAllText(Path.Combine(_dir, "emoji.json"), "[]");
        Assert.False(EmojiDataset.IsAvailable(out reason, _dir));
        Assert.Contains(Path.Combine("img", "google", "64"), reason);

        Directory.CreateDirectory(Path.Combine(_dir, "img", "google", "64"));
        string catalog = Path.Combine(_dir, "emoji.json");
        var none = Assert.Throws<InvalidDataException>(() => EmojiDataset.Load(_dir));
        Assert.Contains("lists no emoji", none.Message);

        File.WriteAllText(catalog, """[{"name": "GRINNING FACE", "image": "1f600.png" """);   // cut short
        var corrupt = Assert.Throws<InvalidDataException>(() => EmojiDataset.Load(_dir));
        Assert.Contains(catalog, corrupt.Message);
        Assert.Contains("not valid JSON", corrupt.Message);

        File.WriteAllText(catalog, """{"name": "GRINNING FACE"}""");
        Assert.Contains("JSON array", Assert.Throws<InvalidDataException>(() => EmojiDataset.Load(_dir)).Message);

        File.WriteAllText(catalog, """[{"image": "1f600.png"}]""");
        var noName = Assert.Throws<InvalidDataException>(() => EmojiDataset.Load(_dir));
        Assert.Contains(catalog, noName.Message);
        Assert.Contains("entry 0 has no \"name\"", noName.Message);
    }

    [SkippableFact]
    public void LoadsTheRealEmoji_WhenDataInstalled()
    {
        Skip.IfNot(EmojiDataset.IsAvailable(out string reason), reason);
        var rows = EmojiDataset.Load();
        output.WriteLine($"{reason} {rows.Count} emoji with Google images.");
        Assert.True(rows.Count > 1500, $"only {rows.Count} emoji");
        Assert.Equal("GRINNING FACE", rows[0].Name);
        Assert.Equal("grinning face smiling", rows[0].Caption);
        Assert.Equal(rows.Count, rows.Select(r => r.ImagePath).Distinct().Count());
        Assert.All(rows.Take(50), r => Assert.True(File.Exists(r.ImagePath), r.ImagePath));
        Assert.All(rows, r => Assert.InRange(r.Caption.Split(' ').Length, 1, EmojiDataset.DefaultMaxTokens));
        Assert.All(rows, r => Assert.Equal(r.Caption, EmojiDataset.NormalizeText(r.Caption)));
        // No skin-tone variations: their file names carry a modifier code point 1f3fb–1f3ff.
        Assert.DoesNotContain(rows, r => Path.GetFileName(r.ImagePath).Contains("-1f3f", StringComparison.Ordinal) && r.Category != "Component");
        using var bitmap = SKBitmap.Decode(rows[0].ImagePath);
        Assert.Equal((EmojiDataset.ImageSize, EmojiDataset.ImageSize), (bitmap.Width, bitmap.Height));
    }

    private static object Entry(string name, string shortName, string subcategory, string image, int sortOrder,
        bool hasGoogle = true, bool writeImage = true, object? skinVariations = null, string category = "Smileys & Emotion")
        => new Dictionary<string, object?>
        {
            ["name"] = name, ["unified"] = "", ["image"] = image, ["short_name"] = shortName, ["short_names"] = new[] { shortName },
            ["category"] = category, ["subcategory"] = subcategory,
            ["sort_order"] = sortOrder, ["has_img_google"] = hasGoogle, ["skin_variations"] = skinVariations,
            ["$write"] = writeImage,
        };

    private void WritePackage(params object[] entries)
    {
        var list = entries.Cast<Dictionary<string, object?>>().ToList();
        foreach (var entry in list)
        {
            if ((bool)entry["$write"]!) WritePng((string)entry["image"]!);
            entry.Remove("$write");
            if (entry["skin_variations"] is null) entry.Remove("skin_variations");
        }
        File.WriteAllText(Path.Combine(_dir, "emoji.json"), JsonSerializer.Serialize(list));
    }

    private void WritePng(string name)
    {
        string folder = Path.Combine(_dir, "img", "google", "64");
        Directory.CreateDirectory(folder);
        using var bitmap = new SKBitmap(8, 8, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        bitmap.Erase(new SKColor(250, 200, 40, 255));
        bitmap.SetPixel(0, 0, new SKColor(0, 0, 0, 0));
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        using var file = File.Create(Path.Combine(folder, name));
        data.SaveTo(file);
    }
}
