using Microsoft.ML.Diffusion.Conditioning;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// The diffusers network of the shape the library's UNet settings describe: diffusers' <c>UNet2DModel</c> for
/// unconditional and class-conditional models (the class embedding with a learned null class), its
/// <c>UNet2DConditionModel</c> for text and vector conditions (cross-attention over the library's condition encoder).
/// block_out_channels are BaseChannels × ChannelMultipliers, layers_per_block the residual blocks per level, and the
/// levels whose feature-map size is an attention resolution get attention blocks (AttnDownBlock2D / AttnUpBlock2D, or
/// CrossAttnDownBlock2D / CrossAttnUpBlock2D); the mid block always attends, as the UNet's middle does.
/// </summary>
internal static class DiffusersUNetShapes
{
    /// <summary>The diffusers network with <paramref name="u"/>'s shape, image and condition.</summary>
    public static NoisePredictorOptions Like(UNetOptions u)
    {
        ArgumentNullException.ThrowIfNull(u);
        u.Validate();   // the same settings are refused, with the same names
        int levels = u.ChannelMultipliers.Length;
        int[] channels = u.LevelChannels();
        var attention = new HashSet<int>(u.AttentionResolutions ?? []);
        bool[] attends = [.. Enumerable.Range(0, levels).Select(i => attention.Contains(u.ImageSize >> i))];
        return u.Condition.Kind switch
        {
            ConditionKind.None or ConditionKind.Class => new UNet2DModelOptions
            {
                ImageChannels = u.ImageChannels,
                ImageSize = u.ImageSize,
                Condition = u.Condition,
                LearnedNullClass = u.Condition.Kind == ConditionKind.Class,
                BlockOutChannels = channels,
                DownBlockTypes = [.. attends.Select(a => a ? "AttnDownBlock2D" : "DownBlock2D")],
                UpBlockTypes = [.. attends.Reverse().Select(a => a ? "AttnUpBlock2D" : "UpBlock2D")],
                LayersPerBlock = u.ResidualBlocksPerLevel,
                NormNumGroups = u.NormGroups,
                // UNet2DModel's attention_head_dim is channels per head, one number for every level: one head over all
                // channels when the UNet has one, else the narrowest attending level's channels / AttentionHeads.
                AttentionHeadDim = u.AttentionHeads == 1 ? null
                    : Enumerable.Range(0, levels).Where(i => attends[i] || i == levels - 1).Min(i => channels[i]) / u.AttentionHeads,
                Dropout = u.Dropout,
            },
            ConditionKind.Text or ConditionKind.Vector => UNet2DConditionOptions.Encoded(new UNet2DConditionModelConfig
            {
                SampleSize = u.ImageSize,
                InChannels = u.ImageChannels,
                OutChannels = u.ImageChannels,
                BlockOutChannels = channels,
                DownBlockTypes = [.. attends.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D")],
                UpBlockTypes = [.. attends.Reverse().Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D")],
                LayersPerBlock = [u.ResidualBlocksPerLevel],
                NormNumGroups = u.NormGroups,
                CrossAttentionDim = u.Condition.TextWidth,
                AttentionHeadDim = [u.AttentionHeads],   // UNet2DConditionModel's attention_head_dim counts heads
                Dropout = u.Dropout,
            }, u.Condition),
            _ => throw new ArgumentException($"No diffusers network takes a {u.Condition.Kind} condition from the UNet settings.", nameof(u)),
        };
    }
}
