using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// CLIP's split of cleaned text into words, the matches of its pattern
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>
/// (case-insensitive), tried in that order at each position; whitespace between matches is dropped. Written out rather
/// than given to <see cref="RegexPreTokenizer"/> because .NET's regular expressions see UTF-16 code units, so letters
/// and digits beyond the Basic Multilingual Plane (CJK extension ideographs, mathematical letters and digits) would
/// fall into the punctuation class, while Python's regex module reads code points. For every code point of Unicode 14
/// (that of Python 3.11, which made the fixtures) the classes here are those of Python's regex.
/// </summary>
internal sealed class ClipPreTokenizer : PreTokenizer
{
    public const string StartOfText = "<|startoftext|>", EndOfText = "<|endoftext|>";

    private static readonly string[] Specials = [StartOfText, EndOfText];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    public static ClipPreTokenizer Instance { get; } = new();

    private ClipPreTokenizer() { }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var words = new List<(int Offset, int Length)>();
        int i = 0;
        while (i < text.Length)
        {
            int length = Literal(text[i..], Specials);
            if (length == 0 && text[i] == '\'') length = Literal(text[i..], Contractions);
            if (length == 0)
            {
                var kind = Kind(text[i..], out length);
                if (kind == CharKind.Space)
                {
                    i += length;
                    continue;
                }
                if (kind != CharKind.Number)   // letters and other characters run on; a digit is a word of its own
                    while (i + length < text.Length && Kind(text[(i + length)..], out int next) == kind) length += next;
            }
            words.Add((i, length));
            i += length;
        }
        return words;
    }

    private enum CharKind { Letter, Number, Space, Other }

    private static CharKind Kind(ReadOnlySpan<char> text, out int length)
    {
        if (Rune.DecodeFromUtf16(text, out var rune, out length) != System.Buffers.OperationStatus.Done) return CharKind.Other;
        // Python's regex, matching case-insensitively, lets no alternative match U+0345 (which case-folds to ι): it is
        // dropped as whitespace is.
        if (Rune.IsWhiteSpace(rune) || rune.Value == 0x345) return CharKind.Space;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }

    // The length of the first literal the text starts with, compared as Python's regex compares case-insensitively
    // (simple case folding, under which ſ is s), or 0.
    private static int Literal(ReadOnlySpan<char> text, string[] literals)
    {
        foreach (string literal in literals)
        {
            if (text.Length < literal.Length) continue;
            bool match = true;
            for (int k = 0; k < literal.Length && match; k++)
            {
                char c = text[k];
                match = c == literal[k] || char.ToLowerInvariant(c) == literal[k] || (c == 'ſ' && literal[k] == 's');
            }
            if (match) return literal.Length;
        }
        return 0;
    }
}
