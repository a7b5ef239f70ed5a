using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// The files of a diffusers <c>tokenizer/</c> folder, as transformers' CLIPTokenizer reads them: <c>vocab.json</c>
/// (token → id), <c>merges.txt</c> (the BPE merges in priority order after a <c>#version</c> line), and, when present,
/// <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> (which wins where both name a token).
/// </summary>
internal sealed class ClipTokenizerFolder
{
    public const string VocabFile = "vocab.json", MergesFile = "merges.txt";
    public const string ConfigFile = "tokenizer_config.json", SpecialTokensFile = "special_tokens_map.json";

    // CLIP's context length, which transformers also reads (its tokenizer takes the first 49152 − 256 − 2 merges).
    private const int DefaultMaxLength = 77, MaxMerges = 49152 - 256 - 2;

    public required Dictionary<string, int> Vocabulary { get; init; }
    public required List<string> Merges { get; init; }
    public required int MaxLength { get; init; }
    public required int BosId { get; init; }
    public required int EosId { get; init; }
    public required int PadId { get; init; }

    public static ClipTokenizerFolder Read(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The tokenizer folder '{folder}' does not exist.");
        string vocabPath = RequiredFile(folder, VocabFile), mergesPath = RequiredFile(folder, MergesFile);
        var vocabulary = ReadVocabulary(vocabPath);
        var merges = ReadMerges(mergesPath, vocabulary);

        // Defaults are transformers' CLIPTokenizer's; the config file, then the special tokens map, override them.
        var tokens = new Dictionary<string, (string Token, string Source)>
        {
            ["bos_token"] = (ClipPreTokenizer.StartOfText, "CLIP's default"),
            ["eos_token"] = (ClipPreTokenizer.EndOfText, "CLIP's default"),
            ["pad_token"] = (ClipPreTokenizer.EndOfText, "CLIP's default"),
        };
        int maxLength = DefaultMaxLength;
        if (ReadOptionalJson(folder, ConfigFile) is { } config)
        {
            ReadTokens(config, Path.Combine(folder, ConfigFile), tokens);
            maxLength = ReadMaxLength(config, Path.Combine(folder, ConfigFile));
        }
        if (ReadOptionalJson(folder, SpecialTokensFile) is { } map) ReadTokens(map, Path.Combine(folder, SpecialTokensFile), tokens);

        int Id(string name)
        {
            var (token, source) = tokens[name];
            return vocabulary.TryGetValue(token, out int id) ? id
                : throw new CheckpointFormatException($"{source} names {name} \"{token}\", which {vocabPath} does not hold.");
        }
        return new ClipTokenizerFolder
        {
            Vocabulary = vocabulary, Merges = merges, MaxLength = maxLength,
            BosId = Id("bos_token"), EosId = Id("eos_token"), PadId = Id("pad_token"),
        };
    }

    private static string RequiredFile(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        return File.Exists(path) ? path
            : throw new FileNotFoundException($"The tokenizer folder '{folder}' has no {name}; a CLIP tokenizer needs {VocabFile} and {MergesFile}.", path);
    }

    private static Dictionary<string, int> ReadVocabulary(string path)
    {
        Dictionary<string, int>? vocabulary;
        try
        {
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path} is not a JSON object of tokens and their ids: {e.Message}", e);
        }
        if (vocabulary is null || vocabulary.Count == 0) throw new CheckpointFormatException($"{path} holds no tokens.");
        var taken = new Dictionary<int, string>();
        foreach (var (token, id) in vocabulary)
        {
            if (id < 0) throw new CheckpointFormatException($"{path} gives \"{token}\" the negative id {id}.");
            if (!taken.TryAdd(id, token)) throw new CheckpointFormatException($"{path} gives both \"{taken[id]}\" and \"{token}\" the id {id}.");
        }
        // CLIP's byte-level BPE can write any text only if every byte's symbol is a token, alone and ending a word.
        foreach (char symbol in ClipByteAlphabet.Symbols)
            foreach (string token in new[] { symbol.ToString(), symbol + ClipTokenizer.EndOfWord })
                if (!vocabulary.ContainsKey(token))
                    throw new CheckpointFormatException($"{path} lacks the byte-level token \"{token}\"; it is not a CLIP vocabulary.");
        return vocabulary;
    }

    private static List<string> ReadMerges(string path, Dictionary<string, int> vocabulary)
    {
        var merges = new List<string>();
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (number == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new CheckpointFormatException($"{path} line {number} (\"{line}\") is not a merge: two tokens separated by one space.");
            if (!vocabulary.ContainsKey(parts[0] + parts[1]))
                throw new CheckpointFormatException($"{path} line {number} merges \"{parts[0]}\" and \"{parts[1]}\" into a token the vocabulary does not hold; the two files do not belong together.");
            if (merges.Count < MaxMerges) merges.Add(line);
        }
        if (merges.Count == 0) throw new CheckpointFormatException($"{path} holds no merges.");
        return merges;
    }

    private static JsonObject? ReadOptionalJson(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CheckpointFormatException($"{path} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path} is not valid JSON: {e.Message}", e);
        }
    }

    // A token is a string or, as transformers writes an AddedToken, an object whose "content" is the string.
    private static void ReadTokens(JsonObject json, string path, Dictionary<string, (string Token, string Source)> tokens)
    {
        foreach (string name in tokens.Keys.ToArray())
        {
            if (!json.TryGetPropertyValue(name, out var node) || node is null) continue;
            var content = node is JsonObject added ? added["content"] : node;
            if (content is not JsonValue value || !value.TryGetValue<string>(out var token) || token.Length == 0) throw new CheckpointFormatException($"{path} has {name} {node.ToJsonString()}, which is not a token.");
            tokens[name] = (token, path);
        }
    }

    private static int ReadMaxLength(JsonObject config, string path)
    {
        if (!config.TryGetPropertyValue("model_max_length", out var node) || node is null) return DefaultMaxLength;
        if (node.GetValueKind() != JsonValueKind.Number) throw new CheckpointFormatException($"{path} has model_max_length {node.ToJsonString()}, which is not a number.");
        double value = node.GetValue<double>();
        // transformers writes 1e30 for "no limit"; a CLIP text encoder still takes 77 positions.
        if (value >= 1e15) return DefaultMaxLength;
        if (value != Math.Floor(value) || value < 3 || value > int.MaxValue)
            throw new CheckpointFormatException($"{path} has model_max_length {node.ToJsonString()}; it must be a whole number of at least 3 (the start token, one token, the end token).");
        return (int)value;
    }
}
