namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// Stable Diffusion 1.x's text encoder in an original checkpoint: <c>cond_stage_model.transformer.*</c> holds a
/// transformers <c>CLIPTextModel</c>'s state dict under its own names (<c>text_model.embeddings.*</c>,
/// <c>text_model.encoder.layers.N.*</c>, <c>text_model.final_layer_norm.*</c>), so the name is the key less the prefix,
/// as diffusers v0.21.4's <c>convert_ldm_clip_checkpoint</c> takes it. Checkpoints made with transformers before 4.x
/// lack the <c>text_model.</c> level; it is added. Most checkpoints also hold the <c>text_model.embeddings.position_ids</c>
/// buffer (0 … 76), which newer CLIP text models do not keep in their state: <see cref="PositionIds"/> names it for a
/// loader to leave out. SD 2.x's OpenCLIP text encoder (<c>cond_stage_model.model.*</c>) is mapped by OpenClipTextKeys.
/// </summary>
internal static class LdmClipTextKeys
{
    public const string Prefix = "cond_stage_model.transformer.";

    /// <summary>The position-index buffer's transformers name.</summary>
    public const string PositionIds = "text_model.embeddings.position_ids";

    /// <summary>The renaming for ModuleWeights.Load with <see cref="Prefix"/>; the position-index buffer is left out unless kept.</summary>
    public static Func<string, string?> Renamer(bool keepPositionIds) =>
        key => ToTransformers(key) is var name && (keepPositionIds || name != PositionIds) ? name : null;

    /// <summary>The transformers name of a key without <see cref="Prefix"/>.</summary>
    public static string ToTransformers(string key) =>
        key.StartsWith("text_model.", StringComparison.Ordinal) ? key : "text_model." + key;
}
