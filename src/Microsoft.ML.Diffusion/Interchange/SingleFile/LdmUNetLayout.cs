using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// The shape of an ldm (Stable Diffusion 1/2) UNet as its tensors show it, in the terms of diffusers'
/// <c>UNet2DConditionModel</c> config: levels of <see cref="BlockOutChannels"/> channels with
/// <see cref="LayersPerBlock"/> resnets each, cross-attention transformers on the levels <see cref="CrossAttention"/>
/// marks (<c>CrossAttnDownBlock2D</c> / <c>CrossAttnUpBlock2D</c>, else <c>DownBlock2D</c> / <c>UpBlock2D</c>) and in
/// the mid block, text features of <see cref="CrossAttentionDim"/> channels. What the tensors cannot show comes from the
/// family: the heads (SD 1.x: 8 heads on every level, head width channels / 8; SD 2.x: heads of 64 channels).
/// </summary>
internal sealed record LdmUNetLayout(
    int InChannels,
    int OutChannels,
    int[] BlockOutChannels,
    int LayersPerBlock,
    bool[] CrossAttention,
    int[] TransformerLayersPerBlock,
    int CrossAttentionDim,
    bool UseLinearProjection,
    int[] AttentionHeads,
    int TimeEmbeddingDim,
    bool MidBlockAttention)
{
    /// <summary>diffusers' <c>down_block_types</c>.</summary>
    public string[] DownBlockTypes => [.. CrossAttention.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D")];

    /// <summary>diffusers' <c>up_block_types</c> (the levels from the bottom up).</summary>
    public string[] UpBlockTypes => [.. CrossAttention.Reverse().Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D")];

    /// <summary>The channels of one attention head on a level.</summary>
    public int HeadDim(int level) => BlockOutChannels[level] / AttentionHeads[level];

    /// <summary>
    /// Reads the layout from the UNet's tensor shapes (names without <see cref="LdmUNetKeys.Prefix"/>); heads are
    /// <paramref name="heads"/> per level or, when that is null, channels / <paramref name="headChannels"/>.
    /// </summary>
    public static LdmUNetLayout Infer(IReadOnlyDictionary<string, long[]> shapes, int? heads, int? headChannels, string source)
    {
        if ((heads is null) == (headChannels is null)) throw new ArgumentException("Give either the heads per level or the channels per head.");
        long[] Shape(string key) => shapes.TryGetValue(key, out var shape)
            ? shape
            : throw new CheckpointFormatException($"{source} is not a Stable Diffusion UNet this library can read: it lacks {LdmUNetKeys.Prefix}{key}.");
        bool Has(string key) => shapes.ContainsKey(key);

        var convIn = Shape("input_blocks.0.0.weight");
        int inChannels = (int)convIn[1], modelChannels = (int)convIn[0];
        int outChannels = (int)Shape("out.2.weight")[0];
        int timeDim = (int)Shape("time_embed.0.weight")[0];

        int inputBlocks = Count(shapes.Keys, "input_blocks.");
        int outputBlocks = Count(shapes.Keys, "output_blocks.");
        // The first downsampler closes the first level: its block index is layers_per_block + 1.
        int firstDown = Enumerable.Range(1, Math.Max(0, inputBlocks - 1)).FirstOrDefault(i => Has($"input_blocks.{i}.0.op.weight"));
        int layers = firstDown > 0 ? firstDown - 1 : inputBlocks - 1;
        if (layers < 1 || inputBlocks % (layers + 1) != 0)
            throw new CheckpointFormatException($"{source} has {inputBlocks} UNet input blocks, which is no Stable Diffusion layout (1 + levels × layers per block + levels − 1).");
        int levels = inputBlocks / (layers + 1);
        if (outputBlocks != levels * (layers + 1))
            throw new CheckpointFormatException($"{source} has {outputBlocks} UNet output blocks where {levels} levels of {layers} layers need {levels * (layers + 1)}.");

        var channels = new int[levels];
        var attention = new bool[levels];
        var depth = new int[levels];
        int? context = null;
        bool? linear = null;
        for (int level = 0; level < levels; level++)
        {
            int first = 1 + level * (layers + 1);
            channels[level] = (int)Shape($"input_blocks.{first}.0.out_layers.3.weight")[0];
            attention[level] = Has($"input_blocks.{first}.1.proj_in.weight");
            depth[level] = attention[level] ? Count(shapes.Keys, $"input_blocks.{first}.1.transformer_blocks.") : 1;
            if (attention[level])
            {
                context ??= (int)Shape($"input_blocks.{first}.1.transformer_blocks.0.attn2.to_k.weight")[1];
                linear ??= Shape($"input_blocks.{first}.1.proj_in.weight").Length == 2;
            }
        }
        bool mid = Has("middle_block.1.proj_in.weight");
        if (mid)
        {
            context ??= (int)Shape("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1];
            linear ??= Shape("middle_block.1.proj_in.weight").Length == 2;
        }
        if (context is null) throw new CheckpointFormatException($"{source} has a UNet without cross-attention, which is no Stable Diffusion UNet.");
        int[] headCounts = [.. channels.Select(c => heads ?? c / headChannels!.Value)];
        return new LdmUNetLayout(inChannels, outChannels, channels, layers, attention, depth, context.Value, linear!.Value, headCounts, timeDim, mid)
        {
            ModelChannels = modelChannels,
        };
    }

    /// <summary>The first level's channels (ldm's <c>model_channels</c>).</summary>
    public int ModelChannels { get; init; }

    // The number of distinct indices after a prefix ("input_blocks." → 12 in SD).
    internal static int Count(IEnumerable<string> keys, string prefix)
    {
        var indices = new HashSet<int>();
        foreach (string key in keys)
        {
            if (!key.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string rest = key[prefix.Length..];
            int dot = rest.IndexOf('.');
            if (int.TryParse(dot < 0 ? rest : rest[..dot], out int index)) indices.Add(index);
        }
        return indices.Count == 0 ? 0 : indices.Max() + 1;
    }

    public bool Equals(LdmUNetLayout? other) =>
        other is not null && InChannels == other.InChannels && OutChannels == other.OutChannels && BlockOutChannels.SequenceEqual(other.BlockOutChannels)
        && LayersPerBlock == other.LayersPerBlock && CrossAttention.SequenceEqual(other.CrossAttention)
        && TransformerLayersPerBlock.SequenceEqual(other.TransformerLayersPerBlock) && CrossAttentionDim == other.CrossAttentionDim
        && UseLinearProjection == other.UseLinearProjection && AttentionHeads.SequenceEqual(other.AttentionHeads)
        && TimeEmbeddingDim == other.TimeEmbeddingDim && MidBlockAttention == other.MidBlockAttention && ModelChannels == other.ModelChannels;

    public override int GetHashCode() => HashCode.Combine(InChannels, BlockOutChannels.Length, LayersPerBlock, CrossAttentionDim);
}
