using Microsoft.ML.Diffusion.Conditioning;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// Hugging Face diffusers' <c>UNet2DModel</c>, built from <see cref="UNet2DModelOptions"/> with diffusers' parameter
/// names and shapes, so <c>diffusion_pytorch_model.safetensors</c> (or <c>.bin</c>) loads into it as it is and its
/// state saves back the same way. Registered as <see cref="RegisteredName"/>. Class labels come from a class
/// condition; a null (dropped or absent) condition takes the learned null class when the options have one
/// (<see cref="UNet2DModelOptions.LearnedNullClass"/>) and otherwise adds no class embedding: what classifier-free
/// guidance and training with condition dropout use.
/// </summary>
internal sealed class UNet2DModelNoisePredictor : NoisePredictor
{
    /// <summary>The name this network kind is registered under (written into model files).</summary>
    public const string RegisteredName = "diffusers-unet2d";

    private readonly Conv2d conv_in;
    private readonly GaussianFourierProjection? time_proj;
    private readonly TimestepEmbedding time_embedding;
    private readonly ClassEmbedding? class_embedding;
    private readonly ModuleList<DownBlock2D> down_blocks = new();
    private readonly MidBlock2D mid_block;
    private readonly ModuleList<UpBlock2D> up_blocks = new();
    private readonly GroupNorm conv_norm_out;
    private readonly OutputProjection conv_out;
    private readonly UNet2DModelOptions _options;

    /// <summary>Builds the network with freshly initialised weights (from torch's global generator).</summary>
    public UNet2DModelNoisePredictor(UNet2DModelOptions options) : base(nameof(UNet2DModelNoisePredictor), options)
    {
        _options = options;
        var o = options;
        var channels = o.BlockOutChannels;
        int timeChannels = channels[0] * 4;
        using (NewDisposeScope())
        {
            conv_in = Conv2d(o.ImageChannels, channels[0], 3, padding: 1);
            int timeInput = channels[0];
            if (o.TimeEmbeddingType == "fourier")
            {
                time_proj = new GaussianFourierProjection(channels[0]);
                timeInput = 2 * channels[0];
            }
            time_embedding = new TimestepEmbedding(timeInput, timeChannels);
            if (o.Condition.Kind == ConditionKind.Class) class_embedding = new ClassEmbedding(o.Condition.ClassCount + (o.LearnedNullClass ? 1 : 0), timeChannels);

            int output = channels[0];
            for (int i = 0; i < channels.Length; i++)
            {
                int input = output;
                output = channels[i];
                down_blocks.Add(new DownBlock2D(input, output, timeChannels, o.DownBlockTypes[i] == "AttnDownBlock2D", i < channels.Length - 1, o));
            }
            mid_block = new MidBlock2D(channels[^1], timeChannels, o);
            var reversed = channels.Reverse().ToArray();
            output = reversed[0];
            for (int i = 0; i < reversed.Length; i++)
            {
                int previous = output;
                output = reversed[i];
                int input = reversed[Math.Min(i + 1, reversed.Length - 1)];
                up_blocks.Add(new UpBlock2D(input, previous, output, timeChannels, o.UpBlockTypes[i] == "AttnUpBlock2D", i < reversed.Length - 1, o));
            }
            conv_norm_out = NormLayers.GroupNorm(o.NormNumGroups, channels[0], o.NormEps);
            conv_out = new OutputProjection(channels[0], o.ImageChannels);
            RegisterComponents();
        }
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor timesteps, ConditionBatch? condition)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(timesteps);
        if (condition is not null && class_embedding is null)
            throw new ArgumentException("This UNet2DModel has no class embedding (num_class_embeds); it takes no condition.", nameof(condition));
        using var scope = NewDisposeScope();
        var o = _options;
        var sample = o.CenterInputSample ? x * 2 - 1 : x;
        var t = timesteps.dim() == 0 ? timesteps.expand(x.shape[0]) : timesteps;

        var embedding = time_embedding.forward(time_proj is null ? Positional(t) : time_proj.forward(t));
        if (class_embedding is not null && o.LearnedNullClass)
        {
            // Label ClassCount is the learned null class: every row without a condition, and the dropped ones.
            long nullClass = o.Condition.ClassCount;
            var labels = condition is null ? full(x.shape[0], nullClass, dtype: int64, device: x.device) : condition.Values.to(int64).view(-1);
            if (condition?.NullMask is { } dropped) labels = where(dropped, full_like(labels, nullClass), labels);
            embedding = embedding + class_embedding.forward(labels);
        }
        else if (class_embedding is not null && condition is not null)
        {
            var classes = class_embedding.forward(condition.Values.to(int64).view(-1));
            if (condition.NullMask is { } dropped)
                classes = classes * (~dropped).to(classes.dtype).unsqueeze(1);   // a null condition adds nothing
            embedding = embedding + classes;
        }

        var h = conv_in.forward(sample);
        var skips = new List<Tensor> { h };
        foreach (var block in down_blocks)
        {
            var (output, blockSkips) = block.forward(h, embedding);
            skips.AddRange(blockSkips);
            h = output;
        }
        h = mid_block.forward(h, embedding);
        foreach (var block in up_blocks)
        {
            int count = block.SkipCount;
            var mine = skips.GetRange(skips.Count - count, count).ToArray();
            skips.RemoveRange(skips.Count - count, count);
            h = block.forward(h, mine, embedding);
        }
        h = conv_out.forward(functional.silu(conv_norm_out.forward(h)));
        if (time_proj is not null)
            h = h / t.to(h.dtype).view(-1, 1, 1, 1);   // Fourier (score) models predict the score scaled by σ
        return h.MoveToOuterDisposeScope();
    }

    // diffusers' get_timestep_embedding: sines then cosines of t·exp(−ln(10⁴)·i/(half − freq_shift)), flipped to cosines first on request.
    private Tensor Positional(Tensor t)
    {
        int dim = _options.BlockOutChannels[0], half = dim / 2;
        var exponent = arange(half, dtype: float32, device: t.device) * (-Math.Log(10000) / (half - _options.FreqShift));
        var angles = t.to(float32).unsqueeze(1) * exponent.exp().unsqueeze(0);
        return _options.FlipSinToCos ? cat([angles.cos(), angles.sin()], 1) : cat([angles.sin(), angles.cos()], 1);
    }
}
