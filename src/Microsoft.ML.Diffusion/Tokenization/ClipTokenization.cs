namespace Microsoft.ML.Diffusion.Tokenization;

/// <summary>
/// A prompt as CLIP's text encoder takes it: <paramref name="Ids"/> is always the tokenizer's maximum length (77):
/// &lt;|startoftext|&gt;, the prompt's tokens, &lt;|endoftext|&gt;, then the padding token.
/// </summary>
/// <param name="Ids">The token ids, padded.</param>
/// <param name="TokenCount">How many tokens the whole prompt has (without the start and end tokens), before truncation.</param>
/// <param name="Truncated">Whether the prompt had more tokens than fit, so that the last ones were dropped.</param>
/// <param name="RemovedText">The dropped tokens as text (empty when nothing was dropped), for the warning diffusers gives.</param>
internal sealed record ClipTokenization(long[] Ids, int TokenCount, bool Truncated, string RemovedText);
