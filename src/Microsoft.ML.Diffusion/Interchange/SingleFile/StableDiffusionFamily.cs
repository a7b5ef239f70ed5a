using Microsoft.ML.Diffusion.Checkpoints;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>The Stable Diffusion versions a single-file checkpoint can be read as.</summary>
internal enum StableDiffusionVersion
{
    /// <summary>SD 1.x: CLIP ViT-L/14 text features of 768 channels, 8 attention heads per level.</summary>
    StableDiffusion1,

    /// <summary>SD 2.x: OpenCLIP ViT-H/14 text features of 1024 channels, heads of 64 channels, linear projections.</summary>
    StableDiffusion2,
}

/// <summary>Which text encoder a single file holds, by its layout.</summary>
internal enum LdmTextEncoderLayout
{
    /// <summary>No text encoder in the file.</summary>
    None,

    /// <summary><c>cond_stage_model.transformer.*</c>: transformers' CLIPTextModel names (SD 1.x; <see cref="LdmClipTextKeys"/>).</summary>
    Clip,

    /// <summary><c>cond_stage_model.model.*</c>: OpenCLIP's names (SD 2.x; mapped by OpenClipTextKeys).</summary>
    OpenClip,
}

/// <summary>What the network predicts; a checkpoint's tensors do not say.</summary>
internal enum LdmPrediction
{
    Epsilon,
    VPrediction,
}

/// <summary>What a name in a single-file checkpoint belongs to.</summary>
internal enum LdmComponent
{
    UNet,
    Vae,
    TextEncoder,

    /// <summary>Not weights of the pipeline: the training schedule's buffers, the EMA copy, the autoencoder's training loss.</summary>
    NotWeights,

    Unknown,
}

/// <summary>
/// Which Stable Diffusion a single-file checkpoint (original ldm / A1111 layout, .safetensors or .ckpt) holds, told from
/// its names and shapes, with the shapes of its networks: SD 1.x or 2.x, with the UNet's and the autoencoder's
/// layouts and the text encoder's layout. Other families are refused naming them (SDXL, SD 3, FLUX, inpainting and
/// other UNets of more input channels, ControlNets, LoRAs, a lone autoencoder …). What the tensors cannot tell follows
/// diffusers v0.21.4's <c>download_from_original_stable_diffusion_ckpt</c>: an SD 2.x file is v-prediction at 768 pixels
/// (the 768-v models) unless its <c>global_step</c> is 875000 (the 512-base model: epsilon, 512), and SD 2.1 (global step
/// 110000) upcasts attention; SD 1.x is epsilon at 512. <paramref name="Prediction"/> can be given instead.
/// </summary>
internal sealed record StableDiffusionFamily(
    StableDiffusionVersion Version,
    LdmUNetLayout UNet,
    LdmVaeLayout? Vae,
    LdmTextEncoderLayout TextEncoder,
    LdmPrediction Prediction,
    int ImageSize,
    bool UpcastAttention)
{
    /// <summary>SD 1.x's heads per level (v1-inference.yaml's num_heads).</summary>
    public const int StableDiffusion1Heads = 8;

    /// <summary>SD 2.x's channels per head (v2-inference.yaml's num_head_channels).</summary>
    public const int StableDiffusion2HeadChannels = 64;

    /// <summary>diffusers' global_step of stabilityai/stable-diffusion-2-base (epsilon, 512 pixels).</summary>
    public const long StableDiffusion2BaseGlobalStep = 875000;

    /// <summary>diffusers' global_step of SD 2.1, which upcasts attention to float32.</summary>
    public const long StableDiffusion21GlobalStep = 110000;

    private const string Unet = LdmUNetKeys.Prefix;
    private const string OpenClipPrefix = "cond_stage_model.model.";

    private static readonly HashSet<string> ScheduleBuffers = new(StringComparer.Ordinal)
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights",
    };

    /// <summary>A name for people: "Stable Diffusion 1.x" or "Stable Diffusion 2.x".</summary>
    public string Name => Version == StableDiffusionVersion.StableDiffusion1 ? "Stable Diffusion 1.x" : "Stable Diffusion 2.x";

    /// <summary>What <paramref name="key"/> belongs to.</summary>
    public static LdmComponent Component(string key) =>
        key.StartsWith(Unet, StringComparison.Ordinal) ? LdmComponent.UNet
        : key.StartsWith(LdmVaeKeys.Prefix + "loss.", StringComparison.Ordinal) ? LdmComponent.NotWeights
        : key.StartsWith(LdmVaeKeys.Prefix, StringComparison.Ordinal) ? LdmComponent.Vae
        : key.StartsWith(LdmClipTextKeys.Prefix, StringComparison.Ordinal) || key.StartsWith(OpenClipPrefix, StringComparison.Ordinal) ? LdmComponent.TextEncoder
        : ScheduleBuffers.Contains(key) || key.StartsWith("model_ema.", StringComparison.Ordinal) ? LdmComponent.NotWeights
        : LdmComponent.Unknown;

    /// <summary>Detects the family of an open weights file; <paramref name="globalStep"/> is a .ckpt's (<see cref="TorchCheckpointFile.GlobalStep"/>).</summary>
    public static StableDiffusionFamily Detect(ITensorFile file, LdmPrediction? prediction = null, long? globalStep = null) =>
        Detect(file.Names.ToDictionary(n => n, file.Shape, StringComparer.Ordinal), file.Source, prediction, globalStep);

    /// <summary>Detects the family from every tensor's name and shape; <paramref name="source"/> names the file in errors.</summary>
    public static StableDiffusionFamily Detect(IReadOnlyDictionary<string, long[]> shapes, string source, LdmPrediction? prediction = null, long? globalStep = null)
    {
        RefuseOtherFamilies(shapes, source);
        var unet = Under(shapes, Unet);
        long[] convIn = unet.GetValueOrDefault("input_blocks.0.0.weight")
            ?? throw new CheckpointFormatException($"{source} has no {Unet}input_blocks.0.0.weight, which every Stable Diffusion UNet has.");
        int inChannels = (int)convIn[1];
        if (inChannels != 4)
        {
            string kind = inChannels switch
            {
                9 => "an inpainting UNet (9 input channels: latents, mask and masked image)",
                8 => "an InstructPix2Pix UNet (8 input channels: latents and the image to edit)",
                5 => "a depth-to-image UNet (5 input channels)",
                7 => "an upscaler UNet (7 input channels)",
                _ => $"a UNet of {inChannels} input channels",
            };
            throw new NotSupportedException($"{source} is {kind}, which is not supported yet; this library reads text-to-image UNets of 4 latent channels.");
        }

        bool clip = shapes.Keys.Any(k => k.StartsWith(LdmClipTextKeys.Prefix, StringComparison.Ordinal));
        bool openClip = shapes.Keys.Any(k => k.StartsWith(OpenClipPrefix, StringComparison.Ordinal));
        if (clip && openClip) throw new CheckpointFormatException($"{source} holds two text encoders, {LdmClipTextKeys.Prefix}* (SD 1.x) and {OpenClipPrefix}* (SD 2.x).");
        var text = clip ? LdmTextEncoderLayout.Clip : openClip ? LdmTextEncoderLayout.OpenClip : LdmTextEncoderLayout.None;

        int context = (int)(unet.FirstOrDefault(kv => kv.Key.EndsWith(".attn2.to_k.weight", StringComparison.Ordinal)).Value
            ?? throw new CheckpointFormatException($"{source} has a UNet without cross-attention, which is no Stable Diffusion UNet."))[1];
        var version = text switch
        {
            LdmTextEncoderLayout.Clip => StableDiffusionVersion.StableDiffusion1,
            LdmTextEncoderLayout.OpenClip => StableDiffusionVersion.StableDiffusion2,
            _ => context switch
            {
                768 => StableDiffusionVersion.StableDiffusion1,
                1024 => StableDiffusionVersion.StableDiffusion2,
                _ => throw new NotSupportedException($"{source} has a UNet with {context}-channel text features and no text encoder; Stable Diffusion 1.x has 768, 2.x 1024."),
            },
        };
        int? textWidth = TextWidth(shapes, text);
        if (textWidth is int width && width != context)
            throw new CheckpointFormatException($"{source} has a text encoder of {width} channels and a UNet that attends to {context}; they do not belong together.");

        var layout = version == StableDiffusionVersion.StableDiffusion1
            ? LdmUNetLayout.Infer(unet, StableDiffusion1Heads, null, source)
            : LdmUNetLayout.Infer(unet, null, StableDiffusion2HeadChannels, source);
        var vaeShapes = Under(shapes, LdmVaeKeys.Prefix);
        var vae = vaeShapes.Keys.Any(k => !k.StartsWith("loss.", StringComparison.Ordinal)) ? LdmVaeLayout.Infer(vaeShapes, source) : null;

        bool sd2Base = version == StableDiffusionVersion.StableDiffusion2 && globalStep == StableDiffusion2BaseGlobalStep;
        var predicted = prediction ?? (version == StableDiffusionVersion.StableDiffusion2 && !sd2Base ? LdmPrediction.VPrediction : LdmPrediction.Epsilon);
        int imageSize = version == StableDiffusionVersion.StableDiffusion2 && !sd2Base ? 768 : 512;
        bool upcast = version == StableDiffusionVersion.StableDiffusion2 && globalStep == StableDiffusion21GlobalStep;
        return new StableDiffusionFamily(version, layout, vae, text, predicted, imageSize, upcast);
    }

    // The text encoder's width: CLIP's token embedding [vocabulary, width]; OpenCLIP's likewise.
    private static int? TextWidth(IReadOnlyDictionary<string, long[]> shapes, LdmTextEncoderLayout text) => text switch
    {
        LdmTextEncoderLayout.Clip => shapes.TryGetValue(LdmClipTextKeys.Prefix + "text_model.embeddings.token_embedding.weight", out var s) ? (int)s[1] : null,
        LdmTextEncoderLayout.OpenClip => shapes.TryGetValue(OpenClipPrefix + "token_embedding.weight", out var s) ? (int)s[1] : null,
        _ => null,
    };

    private static Dictionary<string, long[]> Under(IReadOnlyDictionary<string, long[]> shapes, string prefix) =>
        shapes.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value, StringComparer.Ordinal);

    private static void RefuseOtherFamilies(IReadOnlyDictionary<string, long[]> shapes, string source)
    {
        bool Any(Func<string, bool> test) => shapes.Keys.Any(test);
        bool Starts(string prefix) => Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        static string Bare(string key) => key.StartsWith(Unet, StringComparison.Ordinal) ? key[Unet.Length..] : key;
        void Refuse(string family, string evidence) =>
            throw new NotSupportedException($"{source} is {family} ({evidence}), which is not supported yet; this library reads Stable Diffusion 1.x and 2.x single files.");

        if (Any(k => Bare(k).StartsWith("double_blocks.", StringComparison.Ordinal)) && Any(k => Bare(k).StartsWith("single_blocks.", StringComparison.Ordinal)))
            Refuse("a FLUX checkpoint", "double_blocks and single_blocks");
        if (Starts(Unet + "joint_blocks.")) Refuse("a Stable Diffusion 3 checkpoint", $"{Unet}joint_blocks");
        if (Starts("conditioner.embedders."))
            Refuse(Starts("conditioner.embedders.1.") ? "a Stable Diffusion XL (base) checkpoint" : "a Stable Diffusion XL refiner checkpoint", "conditioner.embedders");
        if (Starts(Unet + "label_emb.")) Refuse("a UNet conditioned on an extra embedding, as SDXL and Stable unCLIP have", $"{Unet}label_emb");
        if (Starts("control_model.") || Starts("input_hint_block.")) Refuse("a ControlNet", "control_model");
        if (Any(k => k.StartsWith("lora_", StringComparison.Ordinal) || k.Contains(".lora_down.", StringComparison.Ordinal) || k.Contains(".lora_A.", StringComparison.Ordinal)))
            Refuse("a LoRA, an adapter to apply to a model rather than a model", "lora_* tensors");
        if (Starts("depth_model.")) Refuse("a depth-to-image checkpoint", "depth_model");
        if (Starts(Unet)) return;
        if (shapes.ContainsKey("encoder.conv_in.weight") && shapes.ContainsKey("quant_conv.weight"))
            throw new NotSupportedException($"{source} is an autoencoder (VAE) alone, not a whole Stable Diffusion checkpoint.");
        if (shapes.ContainsKey("conv_in.weight") && Starts("down_blocks."))
            throw new NotSupportedException($"{source} holds a network under diffusers' names, not an original Stable Diffusion checkpoint; load it from its diffusers folder.");
        throw new CheckpointFormatException($"{source} is not a Stable Diffusion checkpoint: it has no {Unet}* tensors.");
    }
}
