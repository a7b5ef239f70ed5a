namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// CLIP's (and GPT-2's) byte-level alphabet: each of the 256 byte values as one printable character, so that BPE runs on
/// any UTF-8 text without unknown tokens. Printable Latin-1 bytes stand for themselves; the others (controls, space,
/// soft hyphen …) take the characters from U+0100 on, in byte order. Its 256 symbols, alone and with CLIP's end-of-word
/// suffix, are the first 512 entries of CLIP's vocabulary.
/// </summary>
internal static class ClipByteAlphabet
{
    /// <summary>The character that stands for each byte value.</summary>
    public static IReadOnlyList<char> Symbols { get; } = Build();

    private static readonly Dictionary<char, byte> Bytes = Enumerable.Range(0, 256).ToDictionary(b => Symbols[b], b => (byte)b);

    /// <summary>The UTF-8 text that a run of symbols spells; invalid byte sequences become U+FFFD.</summary>
    public static string Decode(string symbols)
    {
        var bytes = new byte[symbols.Length];
        for (int i = 0; i < symbols.Length; i++)
            bytes[i] = Bytes.TryGetValue(symbols[i], out byte b) ? b
                : throw new ArgumentException($"'{symbols[i]}' (U+{(int)symbols[i]:X4}) is not a symbol of CLIP's byte alphabet.", nameof(symbols));
        return System.Text.Encoding.UTF8.GetString(bytes);
    }

    private static char[] Build()
    {
        var symbols = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
            symbols[b] = printable ? (char)b : (char)next++;
        }
        return symbols;
    }
}
