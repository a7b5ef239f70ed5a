using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The noise predictor ε_θ(x_t, t): a UNet in the style of DDPM's (Ho et al. 2020, appendix B).
/// One network serves every step, because t is an input (sinusoidal embedding → MLP, injected into
/// every residual block). Down path: residual blocks (+ attention) per level, strided-conv downsampling;
/// middle: residual, attention, residual; up path: one more block per level, each taking a skip
/// connection from the down path, with nearest-neighbour upsampling. Output has the input's shape.
/// </summary>
public sealed class UNetNoisePredictor : Module<Tensor, Tensor, Tensor>
{
    private readonly Sequential time_embedding;
    private readonly Conv2d input_conv;
    private readonly ModuleList<UNetBlock> down_blocks;
    private readonly ModuleList<Module<Tensor, Tensor>> downsamplers;
    private readonly UNetBlock middle_block1;
    private readonly ResidualBlock middle_block2;
    private readonly ModuleList<UNetBlock> up_blocks;
    private readonly ModuleList<Module<Tensor, Tensor>> upsamplers;
    private readonly GroupNorm output_norm;
    private readonly OutputProjection output_conv;

    /// <summary>Builds the network the options describe (weights initialised from torch's global generator).</summary>
    public UNetNoisePredictor(UNetOptions options) : base(nameof(UNetNoisePredictor))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        int[] channels = options.LevelChannels();
        int levels = channels.Length;
        int embedDim = options.BaseChannels * 4;
        var attentionAt = new HashSet<int>(options.AttentionResolutions ?? []);

        time_embedding = Sequential(
            ("sinusoidal", new SinusoidalTimestepEmbedding(options.BaseChannels)),
            ("linear1", Linear(options.BaseChannels, embedDim)),
            ("silu", SiLU()),
            ("linear2", Linear(embedDim, embedDim)));
        input_conv = Conv2d(options.ImageChannels, options.BaseChannels, 3, padding: 1);

        // Down path; remember every output's width, since each becomes a skip connection.
        down_blocks = new ModuleList<UNetBlock>();
        downsamplers = new ModuleList<Module<Tensor, Tensor>>();
        var skipChannels = new Stack<int>();
        skipChannels.Push(options.BaseChannels);
        int current = options.BaseChannels;
        for (int level = 0; level < levels; level++)
        {
            int resolution = options.ImageSize >> level;
            for (int b = 0; b < options.ResidualBlocksPerLevel; b++)
            {
                down_blocks.Add(new UNetBlock(current, channels[level], embedDim, options, attentionAt.Contains(resolution)));
                current = channels[level];
                skipChannels.Push(current);
            }
            if (level < levels - 1)
            {
                downsamplers.Add(new Downsample(current));
                skipChannels.Push(current);
            }
        }

        middle_block1 = new UNetBlock(current, current, embedDim, options, withAttention: true);
        middle_block2 = new ResidualBlock(current, current, embedDim, options.NormGroups, options.Dropout);

        up_blocks = new ModuleList<UNetBlock>();
        upsamplers = new ModuleList<Module<Tensor, Tensor>>();
        for (int level = levels - 1; level >= 0; level--)
        {
            int resolution = options.ImageSize >> level;
            for (int b = 0; b <= options.ResidualBlocksPerLevel; b++)
            {
                up_blocks.Add(new UNetBlock(current + skipChannels.Pop(), channels[level], embedDim, options, attentionAt.Contains(resolution)));
                current = channels[level];
            }
            if (level > 0) upsamplers.Add(new Upsample(current));
        }

        output_norm = NormLayers.GroupNorm(options.NormGroups, current);
        output_conv = new OutputProjection(current, options.ImageChannels);
        RegisterComponents();
    }

    /// <summary>The options the network was built from.</summary>
    public UNetOptions Options { get; }

    /// <summary>Predicts the noise (or v, or x₀) in <paramref name="x"/> (N, C, H, W) at timesteps <paramref name="timesteps"/> (N).</summary>
    public override Tensor forward(Tensor x, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        int levels = Options.ChannelMultipliers.Length;
        int perLevel = Options.ResidualBlocksPerLevel;
        var emb = functional.silu(time_embedding.forward(timesteps));

        var h = input_conv.forward(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        int block = 0;
        for (int level = 0; level < levels; level++)
        {
            for (int b = 0; b < perLevel; b++)
            {
                h = down_blocks[block++].forward(h, emb);
                skips.Push(h);
            }
            if (level < levels - 1)
            {
                h = downsamplers[level].forward(h);
                skips.Push(h);
            }
        }

        h = middle_block2.forward(middle_block1.forward(h, emb), emb);

        block = 0;
        for (int level = levels - 1, up = 0; level >= 0; level--)
        {
            for (int b = 0; b <= perLevel; b++)
                h = up_blocks[block++].forward(cat([h, skips.Pop()], 1), emb);
            if (level > 0) h = upsamplers[up++].forward(h);
        }

        return output_conv.forward(functional.silu(output_norm.forward(h))).MoveToOuterDisposeScope();
    }
}
