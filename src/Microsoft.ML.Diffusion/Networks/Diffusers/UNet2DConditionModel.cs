using Microsoft.ML.Diffusion.Checkpoints;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>UNet2DConditionModel</c>, the noise predictor of Stable Diffusion 1.x and 2.x, built from a
/// <see cref="UNet2DConditionModelConfig"/> with diffusers' parameter names and shapes, so that a diffusers
/// <c>unet/diffusion_pytorch_model.safetensors</c> loads into it as it is. It maps a latent sample, its timesteps and
/// the text encoder's hidden states to the model's prediction (noise, or v for v-prediction models).
/// </summary>
internal sealed class UNet2DConditionModel : Module<Tensor, Tensor, Tensor, Tensor>
{
    /// <summary>The weights file diffusers writes in a unet folder.</summary>
    public const string WeightsFile = "diffusion_pytorch_model.safetensors";

    /// <summary>The weights file of older diffusers folders: a PyTorch pickle.</summary>
    public const string PickleFile = "diffusion_pytorch_model.bin";

    /// <summary>The configuration file diffusers writes in a unet folder.</summary>
    public const string ConfigFile = "config.json";

    private readonly Conv2d conv_in;
    private readonly TimestepEmbedding time_embedding;
    private readonly ModuleList<ConditionDownBlock2D> down_blocks = new();
    private readonly UNetMidBlock2DCrossAttn mid_block;
    private readonly ModuleList<ConditionUpBlock2D> up_blocks = new();
    private readonly GroupNorm conv_norm_out;
    private readonly OutputProjection conv_out;
    private readonly Func<Tensor, Tensor> _activation;
    private readonly Func<Tensor, Tensor>? _timeEmbeddingActivation;

    /// <summary>
    /// Builds the network with freshly initialised weights (from torch's global generator); <paramref name="zeroOutput"/>
    /// starts conv_out at zero, as the library's networks trained from scratch do.
    /// </summary>
    /// <exception cref="ArgumentException">The configuration cannot be built; the message names the field.</exception>
    public UNet2DConditionModel(UNet2DConditionModelConfig config, bool zeroOutput = false) : base(nameof(UNet2DConditionModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var c = config;
        int levels = c.Levels;
        var channels = c.BlockOutChannels;
        var resnet = new ResnetSettings(c.NormNumGroups, c.NormEps, c.ActFn, c.ResnetTimeScaleShift == "scale_shift", c.Dropout, c.TimeEmbedDim);
        TransformerSettings Transformer(int level, bool mid = false) => new(c.HeadsAt(level), c.CrossAttentionDim,
            UNet2DConditionModelConfig.At(c.TransformerLayersPerBlock, level),
            !mid && UNet2DConditionModelConfig.At(c.OnlyCrossAttention, level),   // diffusers' UNetMidBlock2DCrossAttn does not take only_cross_attention
            c.UseLinearProjection, c.UpcastAttention, c.NormNumGroups);
        _activation = Activation.Get(c.ActFn);
        _timeEmbeddingActivation = c.TimeEmbeddingActFn is null ? null : Activation.Get(c.TimeEmbeddingActFn);
        using (NewDisposeScope())
        {
            conv_in = Conv2d(c.InChannels, channels[0], 3, padding: 1);
            time_embedding = new TimestepEmbedding(channels[0], c.TimeEmbedDim, c.ActFn, c.TimestepPostAct);

            int output = channels[0];
            for (int i = 0; i < levels; i++)
            {
                int input = output;
                output = channels[i];
                var transformer = c.DownBlockTypes[i] == "CrossAttnDownBlock2D" ? Transformer(i) : null;
                down_blocks.Add(new ConditionDownBlock2D(input, output, UNet2DConditionModelConfig.At(c.LayersPerBlock, i), resnet, transformer,
                    i < levels - 1, c.DownsamplePadding));
            }
            mid_block = new UNetMidBlock2DCrossAttn(channels[^1], resnet, Transformer(levels - 1, mid: true), c.MidBlockScaleFactor);

            // Up level i mirrors down level levels − 1 − i: its heads, layers and transformer settings are that level's.
            output = channels[^1];
            for (int i = 0; i < levels; i++)
            {
                int level = levels - 1 - i;
                int previous = output;
                output = channels[level];
                int input = channels[Math.Max(level - 1, 0)];
                var transformer = c.UpBlockTypes[i] == "CrossAttnUpBlock2D" ? Transformer(level) : null;
                up_blocks.Add(new ConditionUpBlock2D(input, previous, output, UNet2DConditionModelConfig.At(c.LayersPerBlock, level) + 1, resnet,
                    transformer, i < levels - 1));
            }
            conv_norm_out = NormLayers.GroupNorm(c.NormNumGroups, channels[0], c.NormEps);
            // conv_out as an OutputProjection: few output channels (4 latent, 1–3 image) meet libtorch's multi-threaded
            // gradient bug for narrow 3×3 convolutions when the network trains.
            conv_out = new OutputProjection(channels[0], c.OutChannels, zeroInitialised: zeroOutput);
            RegisterComponents();
        }
    }

    /// <summary>The configuration the network was built from.</summary>
    public UNet2DConditionModelConfig Config { get; }

    /// <summary>
    /// The prediction for <paramref name="sample"/> (b, in_channels, h, w) at <paramref name="timestep"/> (b values, one
    /// value, or a scalar; whole or fractional) given <paramref name="encoderHiddenStates"/> (b, tokens,
    /// cross_attention_dim): (b, out_channels, h, w). Any h and w run; sides the down path halves with rounding are
    /// restored on the way up, as in diffusers.
    /// </summary>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates)
    {
        ArgumentNullException.ThrowIfNull(sample);
        ArgumentNullException.ThrowIfNull(timestep);
        ArgumentNullException.ThrowIfNull(encoderHiddenStates);
        var c = Config;
        if (sample.dim() != 4 || sample.shape[1] != c.InChannels)
            throw new ArgumentException($"The sample has shape [{string.Join(", ", sample.shape)}]; this UNet takes (batch, {c.InChannels}, height, width).", nameof(sample));
        long batch = sample.shape[0];
        if (encoderHiddenStates.dim() != 3 || encoderHiddenStates.shape[0] != batch || encoderHiddenStates.shape[2] != c.CrossAttentionDim)
            throw new ArgumentException($"encoder_hidden_states has shape [{string.Join(", ", encoderHiddenStates.shape)}]; this UNet takes ({batch}, tokens, {c.CrossAttentionDim}).", nameof(encoderHiddenStates));
        if (timestep.numel() != 1 && (timestep.dim() != 1 || timestep.shape[0] != batch))
            throw new ArgumentException($"The timesteps have shape [{string.Join(", ", timestep.shape)}]; give one per sample ({batch}) or one for all.", nameof(timestep));

        using var scope = NewDisposeScope();
        var x = c.CenterInputSample ? sample * 2 - 1.0 : sample;
        var embedding = TimeEmbedding(timestep.reshape(-1).expand(batch), sample.dtype);

        var h = conv_in.forward(x);
        var skips = new List<Tensor> { h };
        foreach (var block in down_blocks)
        {
            var (output, blockSkips) = block.forward(h, embedding, encoderHiddenStates);
            skips.AddRange(blockSkips);
            h = output;
        }
        h = mid_block.forward(h, embedding, encoderHiddenStates);

        // Sides the down path did not halve exactly are upsampled to the skips' sizes rather than doubled.
        long factor = 1L << (up_blocks.Count - 1);
        bool resize = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0;
        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            int count = block.SkipCount;
            var mine = skips.GetRange(skips.Count - count, count);
            skips.RemoveRange(skips.Count - count, count);
            long[]? size = resize && i < up_blocks.Count - 1 ? [skips[^1].shape[2], skips[^1].shape[3]] : null;
            h = block.forward(h, mine, embedding, encoderHiddenStates, size);
        }
        h = conv_out.forward(_activation(conv_norm_out.forward(h)));
        return h.MoveToOuterDisposeScope();
    }

    // The embedding every residual block receives: diffusers' Timesteps then TimestepEmbedding. SDXL's added embedding
    // (addition_embed_type "text_time": pooled text and size/crop ids) would be summed in here.
    private Tensor TimeEmbedding(Tensor timesteps, ScalarType dtype)
    {
        var projected = Sinusoidal(timesteps, Config.BlockOutChannels[0], Config.FlipSinToCos, Config.FreqShift).to(dtype);
        var embedding = time_embedding.forward(projected);
        return _timeEmbeddingActivation is null ? embedding : _timeEmbeddingActivation(embedding);
    }

    /// <summary>
    /// diffusers' <c>get_timestep_embedding</c> (float32, in its order of operations): sines then cosines of
    /// t·exp(−ln(10⁴)·i/(half − freq_shift)), cosines first when flipped, zero-padded to an odd width.
    /// </summary>
    internal static Tensor Sinusoidal(Tensor timesteps, int dim, bool flipSinToCos, double freqShift)
    {
        using var scope = NewDisposeScope();
        int half = dim / 2;
        var exponent = arange(half, dtype: float32, device: timesteps.device) * -Math.Log(10000) / (half - freqShift);
        var angles = timesteps.to(float32).unsqueeze(1) * exponent.exp().unsqueeze(0);
        var embedding = flipSinToCos ? cat([angles.cos(), angles.sin()], -1) : cat([angles.sin(), angles.cos()], -1);
        if (dim % 2 == 1) embedding = functional.pad(embedding, [0, 1, 0, 0]);
        return embedding.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Copies diffusers-named weights (float32, float16 or bfloat16; held as float32) into the network: every tensor
    /// the network has must be there with its shape, and no other; errors name <paramref name="source"/> and the tensor.
    /// </summary>
    /// <exception cref="CheckpointFormatException">A tensor is missing, unexpected, mis-shaped or not finite.</exception>
    public void LoadWeights(IReadOnlyDictionary<string, Tensor> weights, string source) => ModuleWeights.Load(this, weights, source);

    /// <summary>
    /// Builds the network a diffusers unet folder describes (<c>config.json</c>) and loads its weights
    /// (<c>diffusion_pytorch_model.safetensors</c>, or <c>diffusion_pytorch_model.{variant}.safetensors</c> such as
    /// the "fp16" variant). The network is in evaluation mode.
    /// </summary>
    public static UNet2DConditionModel FromPretrained(string folder, string? variant = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The UNet folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"'{folder}' has no {ConfigFile}; it is not a diffusers UNet folder.", configPath);
        string weights = variant is null ? WeightsFile : $"diffusion_pytorch_model.{variant}.safetensors";
        string pickle = variant is null ? PickleFile : $"diffusion_pytorch_model.{variant}.bin";
        // Older folders hold a PyTorch pickle instead; it is read by the restricted reader (tensors and plain containers only).
        if (!File.Exists(Path.Combine(folder, weights)) && File.Exists(Path.Combine(folder, pickle))) weights = pickle;
        return Load(UNet2DConditionModelConfig.Load(configPath), Path.Combine(folder, weights));
    }

    /// <summary>Builds the network for <paramref name="config"/> and loads the safetensors file at <paramref name="weightsPath"/>; the network is in evaluation mode.</summary>
    public static UNet2DConditionModel Load(UNet2DConditionModelConfig config, string weightsPath)
    {
        if (!File.Exists(weightsPath)) throw new FileNotFoundException($"The UNet weights file '{weightsPath}' does not exist.", weightsPath);
        var network = new UNet2DConditionModel(config);
        try
        {
            // Tensor by tensor from the file into the network: a 3.4 GB float32 UNet never exists twice.
            using ITensorFile file = weightsPath.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
                ? TorchCheckpointFile.Open(weightsPath)
                : SafeTensorsFile.Open(weightsPath);
            ModuleWeights.Load(network, file);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.eval();
        return network;
    }
}
