namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>One emoji as a row of an ML.NET data view: a 64×64 image file and the text that describes it.</summary>
public sealed class EmojiRow
{
    /// <summary>Absolute path of the emoji's 64×64 RGBA PNG (Google's design), for <c>LoadImages</c>.</summary>
    public string ImagePath { get; set; } = "";

    /// <summary>The name as emoji.json gives it, e.g. "GRINNING FACE" (Unicode character names are upper case; flags are not).</summary>
    public string Name { get; set; } = "";

    /// <summary>The main short name, e.g. "grinning".</summary>
    public string ShortName { get; set; } = "";

    /// <summary>The category, e.g. "Smileys &amp; Emotion".</summary>
    public string Category { get; set; } = "";

    /// <summary>The subcategory, e.g. "face-smiling".</summary>
    public string Subcategory { get; set; } = "";

    /// <summary>
    /// A short lower-case text prompt, e.g. "grinning face smiling": the name's words, then the
    /// subcategory's words not already in it (see <see cref="EmojiDataset.MakeCaption"/>).
    /// </summary>
    public string Caption { get; set; } = "";
}
