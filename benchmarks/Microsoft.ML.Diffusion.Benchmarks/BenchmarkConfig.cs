using Microsoft.ML.Diffusion.Networks;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>A network shape and batch to benchmark; the PyTorch reference defines the same ones.</summary>
internal sealed record BenchmarkConfig(string Name, string Description, UNetOptions Network, int Batch)
{
    public static readonly string[] Names = ["bench", "rgb32"];

    public static BenchmarkConfig Create(string name, BenchmarkOptions options) => name switch
    {
        "bench" => new("bench", "1x28x28, base 32, mult [1,2,2], attn @7",
            new UNetOptions { ImageChannels = 1, ImageSize = 28, BaseChannels = 32, ChannelMultipliers = [1, 2, 2], ResidualBlocksPerLevel = 1, AttentionResolutions = [7] },
            options.BenchBatch ?? 64),
        "rgb32" => new("rgb32", "3x32x32, base 64, mult [1,2,2], attn @8",
            new UNetOptions { ImageChannels = 3, ImageSize = 32, BaseChannels = 64, ChannelMultipliers = [1, 2, 2], ResidualBlocksPerLevel = 1, AttentionResolutions = [8] },
            options.Rgb32Batch ?? 64),
        _ => throw new ArgumentException($"Unknown configuration '{name}'."),
    };
}
