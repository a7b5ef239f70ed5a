namespace Microsoft.ML.Diffusion.Conditioning;

/// <summary>The condition a noise predictor takes; part of its <see cref="Networks.NoisePredictorOptions"/>, so it is saved with the model.</summary>
public sealed record ConditioningOptions
{
    /// <summary>The kind of condition.</summary>
    public ConditionKind Kind { get; init; } = ConditionKind.None;

    /// <summary>Number of classes (<see cref="ConditionKind.Class"/>).</summary>
    public int ClassCount { get; init; }

    /// <summary>Length of the condition vector (<see cref="ConditionKind.Vector"/>).</summary>
    public int VectorSize { get; init; }

    /// <summary>Token ids are in [0, VocabularySize); 0 is padding (<see cref="ConditionKind.Text"/>).</summary>
    public int VocabularySize { get; init; }

    /// <summary>Most tokens in a prompt.</summary>
    public int MaxTokens { get; init; } = 16;

    /// <summary>Width of the text encoder.</summary>
    public int TextWidth { get; init; } = 64;

    /// <summary>Transformer layers of the text encoder.</summary>
    public int TextLayers { get; init; } = 2;

    /// <summary>Attention heads of the text encoder and of cross-attention.</summary>
    public int TextHeads { get; init; } = 4;

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public void Validate()
    {
        switch (Kind)
        {
            case ConditionKind.None: break;
            case ConditionKind.Class:
                if (ClassCount < 1) throw new ArgumentOutOfRangeException(nameof(ClassCount), ClassCount, "A class-conditional model needs at least one class.");
                break;
            case ConditionKind.Vector:
                if (VectorSize < 1) throw new ArgumentOutOfRangeException(nameof(VectorSize), VectorSize, "A vector-conditional model needs a positive vector size.");
                break;
            case ConditionKind.Text:
                if (VocabularySize < 2) throw new ArgumentOutOfRangeException(nameof(VocabularySize), VocabularySize, "A text-conditional model needs a vocabulary (id 0 is padding).");
                if (MaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "MaxTokens must be positive.");
                if (TextWidth < 1 || TextHeads < 1 || TextWidth % TextHeads != 0) throw new ArgumentException($"TextWidth ({TextWidth}) must be a positive multiple of TextHeads ({TextHeads}).", nameof(TextWidth));
                if (TextLayers < 0) throw new ArgumentOutOfRangeException(nameof(TextLayers), TextLayers, "TextLayers must not be negative.");
                break;
            case ConditionKind.Prompt:
                if (TextWidth < 1) throw new ArgumentOutOfRangeException(nameof(TextWidth), TextWidth, "A prompt-conditional model needs the width of its text encoder's states.");
                if (MaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "MaxTokens must be positive.");
                break;
            default: throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "Unknown condition kind.");
        }
    }
}
