using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// The library's first noise predictor, a UNet in the style of DDPM's (Ho et al. 2020, appendix B), kept to read the
/// models trained with it that no diffusers network computes: text- and vector-conditional ones (the pooled prompt is
/// added to the time embedding and the cross-attention has no transformer block) and ones whose attention heads span
/// levels of different widths. Other files of it load as diffusers' UNet2DModel (<see cref="FirstUNetFiles"/>), and
/// <see cref="UNetOptions"/> build diffusers networks, so nothing trains a new one.
/// Down path: residual blocks (+ attention) per level, strided-conv downsampling; middle: residual, attention,
/// residual; up path: one more block per level, each taking a skip connection from the down path, with
/// nearest-neighbour upsampling.
/// </summary>
internal sealed class UNetNoisePredictor : NoisePredictor
{
    private readonly Sequential time_embedding;
    private readonly Conv2d input_conv;
    private readonly ModuleList<UNetBlock> down_blocks;
    private readonly ModuleList<Module<Tensor, Tensor>> downsamplers;
    private readonly UNetBlock middle_block1;
    private readonly ResidualBlock middle_block2;
    private readonly ModuleList<UNetBlock> up_blocks;
    private readonly ModuleList<Module<Tensor, Tensor>> upsamplers;
    private readonly ConditionEncoder? condition_encoder;
    private readonly GroupNorm output_norm;
    private readonly OutputProjection output_conv;

    /// <summary>Builds the network the options describe (weights initialised from torch's global generator).</summary>
    public UNetNoisePredictor(UNetOptions options) : base(nameof(UNetNoisePredictor), options)
    {

        int[] channels = options.LevelChannels();
        int levels = channels.Length;
        int embedDim = options.BaseChannels * 4;
        var attentionAt = new HashSet<int>(options.AttentionResolutions ?? []);

        // TorchSharp's layer constructors leave the wrappers their in-place initialisers return undisposed
        // (each holds a reference to a weight); the scopes release them. Conv and linear parameters stay,
        // but an Embedding's weight created inside a scope drops out of the module's parameters, so the
        // condition encoder is built outside (in the same order as always, so seeded weights do not change).
        using (NewDisposeScope())
        {
            time_embedding = Sequential(
                ("sinusoidal", new SinusoidalTimestepEmbedding(options.BaseChannels)),
                ("linear1", Linear(options.BaseChannels, embedDim)),
                ("silu", SiLU()),
                ("linear2", Linear(embedDim, embedDim)));
        }
        if (options.Condition.Kind != Conditioning.ConditionKind.None)
            condition_encoder = new ConditionEncoder(options.Condition, embedDim);
        using var construction = NewDisposeScope();
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
    public new UNetOptions Options => (UNetOptions)base.Options;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor timesteps, Conditioning.ConditionBatch? condition)
    {
        using var scope = NewDisposeScope();
        int levels = Options.ChannelMultipliers.Length;
        int perLevel = Options.ResidualBlocksPerLevel;
        var emb = time_embedding.forward(timesteps);
        Tensor? context = null, keep = null;
        if (condition_encoder is not null)
        {
            Conditioning.ConditionBatch? owned = null;
            if (condition is null) condition = owned = NullCondition(x.shape[0], x.device);
            var encoded = condition_encoder.Encode(condition);
            emb = emb + encoded.Embedding;
            (context, keep) = (encoded.Context, encoded.Keep);
            owned?.Dispose();
        }
        else if (condition is not null)
        {
            throw new ArgumentException("This model is unconditional; it takes no condition.", nameof(condition));
        }
        emb = functional.silu(emb);

        var h = input_conv.forward(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        int block = 0;
        for (int level = 0; level < levels; level++)
        {
            for (int b = 0; b < perLevel; b++)
            {
                h = down_blocks[block++].Forward(h, emb, context, keep);
                skips.Push(h);
            }
            if (level < levels - 1)
            {
                h = downsamplers[level].forward(h);
                skips.Push(h);
            }
        }

        h = middle_block2.forward(middle_block1.Forward(h, emb, context, keep), emb);

        block = 0;
        for (int level = levels - 1, up = 0; level >= 0; level--)
        {
            for (int b = 0; b <= perLevel; b++)
                h = up_blocks[block++].Forward(cat([h, skips.Pop()], 1), emb, context, keep);
            if (level > 0) h = upsamplers[up++].forward(h);
        }

        return output_conv.forward(functional.silu(output_norm.forward(h))).MoveToOuterDisposeScope();
    }

    // A batch whose every row is the null condition, for unconditional passes of a conditional model.
    private Conditioning.ConditionBatch NullCondition(long n, Device device)
    {
        using var scope = NewDisposeScope();
        var c = Options.Condition;
        using var values = c.Kind switch
        {
            Conditioning.ConditionKind.Class => zeros(n, dtype: int64, device: device),
            Conditioning.ConditionKind.Vector => zeros(n, c.VectorSize, device: device),
            _ => zeros(n, 1, dtype: int64, device: device),
        };
        using var plain = c.Kind switch
        {
            Conditioning.ConditionKind.Class => Conditioning.ConditionBatch.Classes(values),
            Conditioning.ConditionKind.Vector => Conditioning.ConditionBatch.Vectors(values),
            _ => Conditioning.ConditionBatch.Tokens(values),
        };
        return plain.AllNull();
    }
}
