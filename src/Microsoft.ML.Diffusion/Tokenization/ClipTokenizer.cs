using System.Text;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// CLIP's tokenizer, as Stable Diffusion's text encoders take prompts: byte-level BPE with an end-of-word suffix
/// (Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>) over CLIP's text cleaning and word split, the prompt between
/// &lt;|startoftext|&gt; and &lt;|endoftext|&gt;, truncated or padded to the model's 77 positions. Gives the ids of
/// openai/CLIP's <c>SimpleTokenizer</c> and of transformers' CLIPTokenizer with ftfy, which diffusers uses, on clean
/// text; see <see cref="ClipTextNormalizer"/> for HTML entities. The padding token only pads: Stable Diffusion 2's
/// "!" in a prompt is tokenized as CLIP (and open_clip, which trained it) does, not split off as transformers does.
/// </summary>
internal sealed class ClipTokenizer
{
    public const string EndOfWord = "</w>";

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<int, string> _tokens;

    private ClipTokenizer(BpeTokenizer bpe, Dictionary<int, string> tokens, int maxLength, int bosId, int eosId, int padId)
    {
        _bpe = bpe;
        _tokens = tokens;
        MaxLength = maxLength;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
    }

    /// <summary>The number of ids <see cref="Encode"/> gives (the text encoder's positions, 77 for CLIP).</summary>
    public int MaxLength { get; }

    public int BosId { get; }

    public int EosId { get; }

    /// <summary>The id that fills the positions after the end token: &lt;|endoftext|&gt; for Stable Diffusion 1, "!" (0) for 2.</summary>
    public int PadId { get; }

    /// <summary>
    /// Reads a diffusers <c>tokenizer/</c> folder (<c>vocab.json</c>, <c>merges.txt</c>, and the special tokens and
    /// maximum length from <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> when present). Throws
    /// <see cref="DirectoryNotFoundException"/> or <see cref="FileNotFoundException"/> for what is missing and
    /// <see cref="CheckpointFormatException"/>, naming the file, for what is malformed.
    /// </summary>
    public static ClipTokenizer FromFolder(string folder)
    {
        var files = ClipTokenizerFolder.Read(folder);
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(files.Vocabulary)
            {
                Merges = files.Merges,
                SpecialTokens = new Dictionary<string, int>
                {
                    [ClipPreTokenizer.StartOfText] = files.Vocabulary[ClipPreTokenizer.StartOfText],
                    [ClipPreTokenizer.EndOfText] = files.Vocabulary[ClipPreTokenizer.EndOfText],
                },
                Normalizer = ClipTextNormalizer.Instance,
                PreTokenizer = ClipPreTokenizer.Instance,
                ByteLevel = true,
                EndOfWordSuffix = EndOfWord,
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new CheckpointFormatException($"The tokenizer files in '{folder}' do not make a BPE tokenizer: {e.Message}", e);
        }
        return new ClipTokenizer(bpe, files.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key), files.MaxLength, files.BosId, files.EosId, files.PadId);
    }

    /// <summary>The prompt's token ids, without the start and end tokens and not truncated.</summary>
    public IReadOnlyList<int> Tokenize(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (!IsValidUnicode(prompt)) throw new ArgumentException("The prompt holds a lone surrogate; it is not valid Unicode text.", nameof(prompt));
        return _bpe.EncodeToIds(prompt);
    }

    /// <summary>
    /// The prompt as <see cref="MaxLength"/> ids: start token, the prompt's tokens, end token, padding. A prompt with more
    /// than <see cref="MaxLength"/> − 2 tokens keeps its first ones, as diffusers truncates, and says what it lost.
    /// </summary>
    public ClipTokenization Encode(string prompt)
    {
        var tokens = Tokenize(prompt);
        int kept = Math.Min(tokens.Count, MaxLength - 2);
        var ids = new long[MaxLength];
        ids[0] = BosId;
        for (int i = 0; i < kept; i++) ids[i + 1] = tokens[i];
        ids[kept + 1] = EosId;
        for (int i = kept + 2; i < MaxLength; i++) ids[i] = PadId;
        bool truncated = kept < tokens.Count;
        return new ClipTokenization(ids, tokens.Count, truncated, truncated ? Decode(tokens.Skip(kept)) : "");
    }

    /// <summary>
    /// The text of the ids, as CLIP decodes it: the tokens' bytes as UTF-8, a space where a token ends a word, and (as
    /// transformers does) no whitespace at either end. Special tokens appear as their text.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        var symbols = new StringBuilder();
        foreach (int id in ids)
            symbols.Append(_tokens.TryGetValue(id, out var token) ? token : throw new ArgumentOutOfRangeException(nameof(ids), id, "The id is not in the vocabulary."));
        return ClipTextNormalizer.Strip(ClipByteAlphabet.Decode(symbols.ToString()).Replace(EndOfWord, " "));
    }

    private static bool IsValidUnicode(string text)
    {
        for (int i = 0; i < text.Length;)
        {
            if (Rune.DecodeFromUtf16(text.AsSpan(i), out _, out int length) != System.Buffers.OperationStatus.Done) return false;
            i += length;
        }
        return true;
    }
}
