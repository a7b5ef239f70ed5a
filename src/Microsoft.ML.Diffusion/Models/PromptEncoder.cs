using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Models;

/// <summary>
/// A Stable Diffusion model's text side: CLIP's tokenizer and text encoder, prompts in, the hidden states the UNet
/// reads through cross-attention out. Prompts longer than the encoder's positions are truncated, as diffusers does,
/// and each truncation is reported with the text it dropped.
/// </summary>
internal sealed class PromptEncoder : IDisposable
{
    public PromptEncoder(ClipTokenizer tokenizer, ClipTextModel textModel, int skipLayers = 0)
    {
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        TextModel = textModel ?? throw new ArgumentNullException(nameof(textModel));
        if (skipLayers < 0 || skipLayers >= textModel.Config.NumHiddenLayers)
            throw new ArgumentOutOfRangeException(nameof(skipLayers), skipLayers, $"Layers to skip must be from 0 to {textModel.Config.NumHiddenLayers - 1}.");
        SkipLayers = skipLayers;
    }

    public ClipTokenizer Tokenizer { get; }

    public ClipTextModel TextModel { get; }

    /// <summary>Layers before the last whose output is used ("clip skip"; 0 uses the last layer).</summary>
    public int SkipLayers { get; }

    /// <summary>Width of the states (the UNet's cross_attention_dim must match it).</summary>
    public int Width => TextModel.Config.HiddenSize;

    /// <summary>Positions of the states (77 for CLIP).</summary>
    public int Positions => Tokenizer.MaxLength;

    /// <summary>The states (N, 77, D) of <paramref name="prompts"/> on <paramref name="device"/>; <paramref name="onTruncated"/> hears of each prompt cut short.</summary>
    public Tensor Encode(IReadOnlyList<string> prompts, Device device, Action<string>? onTruncated = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var ids = new long[prompts.Count * Positions];
        for (int i = 0; i < prompts.Count; i++)
        {
            var tokens = Tokenizer.Encode(prompts[i] ?? "");
            if (tokens.Truncated)
                onTruncated?.Invoke($"The prompt \"{Shorten(prompts[i]!)}\" has {tokens.TokenCount} tokens; the text encoder takes {Positions - 2}, so this part was dropped: \"{tokens.RemovedText}\".");
            tokens.Ids.CopyTo(ids, i * Positions);
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var input = torch.tensor(ids, [prompts.Count, Positions]).to(device);
        return TextModel.Encode(input, SkipLayers).HiddenState.MoveToOuterDisposeScope();
    }

    private static string Shorten(string prompt) => prompt.Length <= 60 ? prompt : prompt[..57] + "…";

    public void Dispose() => TextModel.Dispose();
}
