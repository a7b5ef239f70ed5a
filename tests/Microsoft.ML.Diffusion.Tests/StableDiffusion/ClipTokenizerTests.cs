using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Tokenization;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// CLIP's tokenizer: the ids openai/CLIP's own SimpleTokenizer gives (TestData/StableDiffusion/tokenizer, made by
/// make_tokenizer_fixtures.py), padding and truncation as diffusers does them, and clear errors for bad folders.
/// </summary>
public sealed class ClipTokenizerTests : IDisposable
{
    private const string RealVocabularyVariable = "MLDIFFUSION_CLIP_TOKENIZER";

    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "tokenizer", name);

    private static readonly string Small = Fixture("tokenizer-small");

    // A copy of the small tokenizer folder to change.
    private string Copy()
    {
        string folder = Path.Combine(_folder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(Small)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    private static void EditJson(string folder, string file, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, file);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    private sealed record Case(string Prompt, int[] Ids, string Removed);

    private static Case[] Cases(string file)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Fixture(file)));
        return [.. document.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("prompt").GetString()!,
            [.. c.GetProperty("ids").EnumerateArray().Select(id => id.GetInt32())],
            c.TryGetProperty("removed", out var removed) ? removed.GetString()! : ""))];
    }

    // Every case's ids as diffusers pads and truncates CLIP's: the first 76, then <|endoftext|>, then padding.
    private static void AssertGivesClipsIds(ClipTokenizer tokenizer, Case[] cases)
    {
        Assert.NotEmpty(cases);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var expected = new long[77];
            for (int i = 0; i < 77; i++) expected[i] = i < Math.Min(c.Ids.Length, 76) ? c.Ids[i] : tokenizer.PadId;
            expected[Math.Min(c.Ids.Length, 77) - 1] = tokenizer.EosId;
            var encoded = tokenizer.Encode(c.Prompt);
            if (!encoded.Ids.SequenceEqual(expected))
                failures.Add($"\"{c.Prompt}\": expected {string.Join(",", c.Ids)}, got {string.Join(",", encoded.Ids)}");
            else if (encoded.TokenCount != c.Ids.Length - 2 || encoded.Truncated != c.Ids.Length > 77 || encoded.RemovedText != c.Removed)
                failures.Add($"\"{c.Prompt}\": expected {c.Ids.Length - 2} tokens, truncated {c.Ids.Length > 77}, removed \"{c.Removed}\"; "
                    + $"got {encoded.TokenCount}, {encoded.Truncated}, \"{encoded.RemovedText}\"");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Length} prompts differ from CLIP's tokenizer:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void TheSmallVocabularyGivesClipsIds()
    {
        var tokenizer = ClipTokenizer.FromFolder(Small);
        Assert.Equal(77, tokenizer.MaxLength);
        Assert.Equal(tokenizer.EosId, tokenizer.PadId);
        AssertGivesClipsIds(tokenizer, Cases("expected_small.json"));
    }

    // CLIP's real vocabulary (1.3 MB of merges) is not committed: the fixture script writes its diffusers folder.
    [SkippableFact]
    public void TheRealVocabularyGivesClipsIds()
    {
        string? folder = Environment.GetEnvironmentVariable(RealVocabularyVariable);
        Skip.If(string.IsNullOrEmpty(folder),
            $"Set {RealVocabularyVariable} to the folder that TestData/StableDiffusion/tokenizer/make_tokenizer_fixtures.py --clip <openai/CLIP checkout> "
            + "--real-out <folder> writes (CLIP's real vocabulary as a diffusers tokenizer folder) to run this test.");
        var tokenizer = ClipTokenizer.FromFolder(folder!);
        Assert.Equal((49406, 49407, 49407), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId));
        AssertGivesClipsIds(tokenizer, Cases("expected_real.json"));
    }

    [Fact]
    public void AnEmptyPromptIsTheStartAndEndTokensThenPadding()
    {
        var tokenizer = ClipTokenizer.FromFolder(Small);
        var encoded = tokenizer.Encode("  \t ");
        Assert.Equal([tokenizer.BosId, tokenizer.EosId, .. Enumerable.Repeat((long)tokenizer.PadId, 75)], encoded.Ids);
        Assert.Equal((0, false, ""), (encoded.TokenCount, encoded.Truncated, encoded.RemovedText));
    }

    [Fact]
    public void ALongPromptKeepsItsFirst75TokensAndSaysWhatItDropped()
    {
        var tokenizer = ClipTokenizer.FromFolder(Small);
        int a = tokenizer.Tokenize("a").Single();

        var fits = tokenizer.Encode(string.Concat(Enumerable.Repeat("a ", 75)));
        Assert.Equal([tokenizer.BosId, .. Enumerable.Repeat((long)a, 75), tokenizer.EosId], fits.Ids);
        Assert.Equal((75, false, ""), (fits.TokenCount, fits.Truncated, fits.RemovedText));

        var over = tokenizer.Encode(string.Concat(Enumerable.Repeat("a ", 75)) + "photograph of an astronaut");
        Assert.Equal(fits.Ids, over.Ids);
        Assert.True(over.Truncated);
        Assert.Equal(75 + tokenizer.Tokenize("photograph of an astronaut").Count, over.TokenCount);
        Assert.Equal("photograph of an astronaut", over.RemovedText);
    }

    [Fact]
    public void PaddingTakesThePadTokenTheFolderNames()
    {
        // Stable Diffusion 2's tokenizer pads with "!" (id 0); its special_tokens_map.json wins over tokenizer_config.json.
        string folder = Copy();
        EditJson(folder, "special_tokens_map.json", map => map["pad_token"] = "!");
        var tokenizer = ClipTokenizer.FromFolder(folder);
        Assert.Equal(0, tokenizer.PadId);
        var encoded = tokenizer.Encode("a cat!");
        var eos = ClipTokenizer.FromFolder(Small).Encode("a cat!");
        Assert.Equal(eos.Ids.Take(5), encoded.Ids.Take(5));       // bos, a, cat, !, eos: "!" in the prompt is CLIP's, not the pad token
        Assert.Equal(tokenizer.EosId, encoded.Ids[4]);
        Assert.All(encoded.Ids.Skip(5), id => Assert.Equal(0, id));
        Assert.All(eos.Ids.Skip(5), id => Assert.Equal(tokenizer.EosId, id));

        // A pad token given as an AddedToken object, in tokenizer_config.json alone.
        File.Delete(Path.Combine(folder, "special_tokens_map.json"));
        EditJson(folder, "tokenizer_config.json", config => config["pad_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = "!" });
        Assert.Equal(0, ClipTokenizer.FromFolder(folder).PadId);
    }

    [Fact]
    public void VocabularyAndMergesAloneTakeClipsDefaults()
    {
        string folder = Copy();
        File.Delete(Path.Combine(folder, "special_tokens_map.json"));
        File.Delete(Path.Combine(folder, "tokenizer_config.json"));
        var tokenizer = ClipTokenizer.FromFolder(folder);
        var small = ClipTokenizer.FromFolder(Small);
        Assert.Equal((small.MaxLength, small.BosId, small.EosId, small.PadId), (tokenizer.MaxLength, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId));
        Assert.Equal(small.Encode("a photograph").Ids, tokenizer.Encode("a photograph").Ids);
    }

    [Fact]
    public void TheConfigurationsMaximumLengthSetsTheNumberOfIds()
    {
        string folder = Copy();
        EditJson(folder, "tokenizer_config.json", config => config["model_max_length"] = 8);
        var encoded = ClipTokenizer.FromFolder(folder).Encode("a photograph of an astronaut riding a horse");
        Assert.Equal(8, encoded.Ids.Length);
        Assert.True(encoded.Truncated);

        EditJson(folder, "tokenizer_config.json", config => config["model_max_length"] = 1e30);   // transformers' "no limit"
        Assert.Equal(77, ClipTokenizer.FromFolder(folder).MaxLength);
    }

    // "🐱," is one word (emoji and punctuation are one class), "1024" four (each digit is a word).
    [Fact]
    public void DecodeGivesTheCleanedText()
    {
        var tokenizer = ClipTokenizer.FromFolder(Small);
        Assert.Equal("a photograph of café 🐱, 1 0 2 4", tokenizer.Decode(tokenizer.Tokenize("  A Photograph\tof CAFÉ 🐱, 1024 ")));
    }

    [Fact]
    public void AMissingFolderOrFileIsNamed()
    {
        string missing = Path.Combine(_folder, "no-such-tokenizer");
        var noFolder = Assert.Throws<DirectoryNotFoundException>(() => ClipTokenizer.FromFolder(missing));
        Assert.Contains(missing, noFolder.Message);

        foreach (string file in new[] { "vocab.json", "merges.txt" })
        {
            string folder = Copy();
            File.Delete(Path.Combine(folder, file));
            var error = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFolder(folder));
            Assert.Equal(Path.Combine(folder, file), error.FileName);
            Assert.Contains(file, error.Message);
        }
    }

    [Theory]
    [InlineData("vocab.json", "{\"a\": 1", "vocab.json is not a JSON object")]
    [InlineData("vocab.json", "[1, 2]", "vocab.json is not a JSON object")]
    [InlineData("vocab.json", "{\"a\": 0, \"b\": 1}", "lacks the byte-level token")]
    [InlineData("merges.txt", "#version: 0.2\ni n\nthe\n", "merges.txt line 3 (\"the\") is not a merge")]
    [InlineData("merges.txt", "#version: 0.2\nq z\n", "merges.txt line 2 merges \"q\" and \"z\"")]
    [InlineData("merges.txt", "#version: 0.2\n", "merges.txt holds no merges")]
    [InlineData("tokenizer_config.json", "{\"model_max_length\": ", "tokenizer_config.json is not valid JSON")]
    [InlineData("tokenizer_config.json", "{\"model_max_length\": \"77\"}", "model_max_length \"77\", which is not a number")]
    [InlineData("tokenizer_config.json", "{\"model_max_length\": 2}", "model_max_length 2")]
    [InlineData("special_tokens_map.json", "{\"pad_token\": \"<pad>\"}", "special_tokens_map.json names pad_token \"<pad>\"")]
    [InlineData("special_tokens_map.json", "{\"eos_token\": {\"lstrip\": false}}", "special_tokens_map.json has eos_token")]
    public void AMalformedFileIsNamed(string file, string content, string message)
    {
        string folder = Copy();
        File.WriteAllText(Path.Combine(folder, file), content);
        var error = Assert.Throws<CheckpointFormatException>(() => ClipTokenizer.FromFolder(folder));
        Assert.Contains(message, error.Message);
        Assert.Contains(folder, error.Message);
    }

    [Fact]
    public void APromptThatIsNotUnicodeTextIsRejected()
    {
        var tokenizer = ClipTokenizer.FromFolder(Small);
        Assert.Throws<ArgumentException>(() => tokenizer.Encode("a \uD800 cat"));
    }
}
