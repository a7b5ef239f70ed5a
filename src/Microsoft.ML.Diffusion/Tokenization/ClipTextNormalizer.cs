using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// CLIP's text cleaning before its pre-tokenizer (<c>whitespace_clean(basic_clean(text)).lower()</c>): NFC (what
/// <c>ftfy.fix_text</c> does to clean text), each run of whitespace to one space, no whitespace at either end, then
/// Python's <c>str.lower()</c>. HTML entities stay as they are, as in transformers' CLIPTokenizer, which diffusers uses
/// (CLIP's own tokenizer unescapes them).
/// </summary>
internal sealed class ClipTextNormalizer : Normalizer
{
    public static ClipTextNormalizer Instance { get; } = new();

    private ClipTextNormalizer() { }

    public override string Normalize(string original) => Lower(CleanWhitespace(original.Normalize(NormalizationForm.FormC)));

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());

    /// <summary>
    /// Python's <c>str.strip()</c>, which also removes U+001C–U+001F: its regex <c>\s</c> (Unicode White_Space, as
    /// .NET's) does not match them.
    /// </summary>
    public static string Strip(string text) => text.Trim(StrippedSpace);

    private static readonly char[] StrippedSpace =
        [.. Enumerable.Range(0, 0x10000).Select(c => (char)c).Where(c => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F')];

    private static string CleanWhitespace(string text)
    {
        var cleaned = new StringBuilder(text.Length);
        bool space = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c))
            {
                space = true;
                continue;
            }
            if (space) cleaned.Append(' ');
            space = false;
            cleaned.Append(c);
        }
        return Strip(cleaned.ToString());
    }

    /// <summary>
    /// Python's <c>str.lower()</c>: the simple lower-case mappings, as .NET's invariant ones, except that İ becomes
    /// "i̇" (its one unconditional full mapping) and Σ ends a word as ς. For the code points of Unicode 14 (Python
    /// 3.11's) the result and the final-sigma context are Python's, but where later versions changed a category.
    /// </summary>
    public static string Lower(string text)
    {
        var lower = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out int length);
            if (rune.Value == 0x130) lower.Append("i\u0307");
            else if (rune.Value == 0x3A3) lower.Append(IsFinalSigma(text, i) ? 'ς' : 'σ');
            else lower.Append(Rune.ToLowerInvariant(rune).ToString());
            i += length;
        }
        return lower.ToString();
    }

    // Unicode's Final_Sigma context, as CPython tests it: a cased letter before Σ and none after it, skipping
    // case-ignorable characters on both sides.
    private static bool IsFinalSigma(string text, int index)
    {
        Rune? before = null, after = null;
        for (int j = index; j > 0;)
        {
            Rune.DecodeLastFromUtf16(text.AsSpan(0, j), out var rune, out int length);
            j -= length;
            if (!IsCaseIgnorable(rune)) { before = rune; break; }
        }
        if (before is not { } b || !IsCased(b)) return false;
        for (int j = index + 1; j < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(j), out var rune, out int length);
            j += length;
            if (!IsCaseIgnorable(rune)) { after = rune; break; }
        }
        return after is not { } a || !IsCased(a);
    }

    // Unicode's Cased property: the letter case categories, the characters that change case (circled letters), and the
    // other Other_Lowercase / Other_Uppercase characters that are not case-ignorable (ordinal indicators, squared letters).
    private static bool IsCased(Rune rune) =>
        Rune.GetUnicodeCategory(rune) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
        || Rune.ToLowerInvariant(rune) != rune || Rune.ToUpperInvariant(rune) != rune
        || rune.Value is 0xAA or 0xBA or >= 0x1F130 and <= 0x1F149 or >= 0x1F150 and <= 0x1F169 or >= 0x1F170 and <= 0x1F189;

    // Unicode's Case_Ignorable: marks, format characters, modifier letters and symbols, and the Word_Break MidLetter,
    // MidNumLet and Single_Quote characters (apostrophes, full stops, colons, middle dots).
    private static bool IsCaseIgnorable(Rune rune) =>
        Rune.GetUnicodeCategory(rune) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
        || rune.Value is '\'' or '.' or ':' or 0xB7 or 0x387 or 0x55F or 0x5F4 or 0x2018 or 0x2019 or 0x2024 or 0x2027
            or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A;
}
