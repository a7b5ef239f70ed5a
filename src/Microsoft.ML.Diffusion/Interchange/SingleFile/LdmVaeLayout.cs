using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// The shape of an ldm autoencoder (<c>first_stage_model</c>) as its tensors show it, in the terms of diffusers'
/// <c>AutoencoderKL</c> config: levels of <see cref="BlockOutChannels"/> channels (<c>DownEncoderBlock2D</c> /
/// <c>UpDecoderBlock2D</c>), <see cref="LayersPerBlock"/> resnets per encoder level (the decoder has one more), and
/// <see cref="LatentChannels"/> latent channels. The group-norm groups (32 in Stable Diffusion) and the latents'
/// scaling factor (0.18215 in SD 1.x and 2.x) are not in the tensors.
/// </summary>
internal sealed record LdmVaeLayout(int InChannels, int OutChannels, int[] BlockOutChannels, int LayersPerBlock, int LatentChannels)
{
    /// <summary>Reads the layout from the autoencoder's tensor shapes (names without <see cref="LdmVaeKeys.Prefix"/>).</summary>
    public static LdmVaeLayout Infer(IReadOnlyDictionary<string, long[]> shapes, string source)
    {
        long[] Shape(string key) => shapes.TryGetValue(key, out var shape)
            ? shape
            : throw new CheckpointFormatException($"{source} is not a Stable Diffusion autoencoder this library can read: it lacks {LdmVaeKeys.Prefix}{key}.");
        int levels = LdmUNetLayout.Count(shapes.Keys, "encoder.down.");
        if (levels == 0) throw new CheckpointFormatException($"{source} has an autoencoder without encoder.down blocks.");
        int layers = LdmUNetLayout.Count(shapes.Keys, "encoder.down.0.block.");
        int decoderLayers = LdmUNetLayout.Count(shapes.Keys, "decoder.up.0.block.");
        if (decoderLayers != layers + 1)
            throw new CheckpointFormatException($"{source} has an autoencoder with {layers} resnets per encoder level and {decoderLayers} per decoder level; Stable Diffusion's decoder has one more.");
        int[] channels = [.. Enumerable.Range(0, levels).Select(i => (int)Shape($"encoder.down.{i}.block.0.conv2.weight")[0])];
        return new LdmVaeLayout((int)Shape("encoder.conv_in.weight")[1], (int)Shape("decoder.conv_out.weight")[0], channels, layers,
                                (int)Shape("decoder.conv_in.weight")[1]);
    }

    public bool Equals(LdmVaeLayout? other) =>
        other is not null && InChannels == other.InChannels && OutChannels == other.OutChannels && BlockOutChannels.SequenceEqual(other.BlockOutChannels)
        && LayersPerBlock == other.LayersPerBlock && LatentChannels == other.LatentChannels;

    public override int GetHashCode() => HashCode.Combine(InChannels, OutChannels, BlockOutChannels.Length, LayersPerBlock, LatentChannels);
}
