using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Tokenization;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Interchange.SingleFile;

/// <summary>
/// Loads a Stable Diffusion 1.x or 2.x single file (the original ldm / A1111 layout, <c>.safetensors</c> or a
/// <c>.ckpt</c> pickle) as <see cref="StableDiffusionParts"/>, as diffusers v0.21.4's <c>from_single_file</c> reads it:
/// the family from the names and shapes (<see cref="StableDiffusionFamily"/>), diffusers configs from the layouts and
/// SD's fixed choices, every network copied tensor by tensor from the file (so memory holds about one copy of the
/// model), SD 2.x's OpenCLIP text encoder without its last layer (diffusers' <c>convert_open_clip_checkpoint</c>: the
/// penultimate layer, so <see cref="StableDiffusionParts.SkipLayers"/> is 0), and diffusers' default scheduler for a
/// single file: PNDM (<c>scheduler_type</c> "pndm": DDIMScheduler's scaled_linear 0.00085–0.012 over 1000 steps,
/// steps_offset 1, set_alpha_to_one false, then PNDMScheduler with skip_prk_steps), with the family's prediction type.
/// A single file holds no tokenizer: it comes from a diffusers <c>tokenizer/</c> folder.
/// </summary>
internal static class StableDiffusionSingleFile
{
    /// <summary>Loads the file at <paramref name="path"/> with the tokenizer in <paramref name="tokenizerFolder"/>; <paramref name="prediction"/> overrides the family's.</summary>
    public static StableDiffusionParts Load(string path, string tokenizerFolder, LdmPrediction? prediction = null) =>
        Load(path, tokenizerFolder, prediction, LdmArchitectureChoices.StableDiffusion);

    /// <summary>Loads with other <paramref name="choices"/> than Stable Diffusion's (tiny test networks).</summary>
    internal static StableDiffusionParts Load(string path, string tokenizerFolder, LdmPrediction? prediction, LdmArchitectureChoices choices)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(choices);
        if (!File.Exists(path)) throw new FileNotFoundException($"The Stable Diffusion single file '{path}' does not exist.", path);
        var tokenizer = ReadTokenizer(tokenizerFolder);
        using var file = Open(path);
        long? globalStep = (file as TorchCheckpointFile)?.GlobalStep;
        var family = StableDiffusionFamily.Detect(file, prediction, globalStep);
        CheckNames(file, family);

        UNet2DConditionModel? unet = null;
        AutoencoderKL? vae = null;
        ClipTextModel? text = null;
        try
        {
            var unetConfig = UNetConfig(family, choices);
            unet = new UNet2DConditionModel(unetConfig);
            ModuleWeights.Load(unet, file, LdmUNetKeys.Prefix, LdmUNetKeys.Renamer(family.UNet, file.Source));
            unet.eval();

            vae = new AutoencoderKL(VaeConfig(family, choices));
            ModuleWeights.Load(vae, file, LdmVaeKeys.Prefix, LdmVaeKeys.Renamer(family.Vae!, file.Source));
            vae.eval();

            text = family.TextEncoder == LdmTextEncoderLayout.Clip ? LoadClip(file, choices) : LoadOpenClip(file, choices);
            text.eval();

            string scheduler = SchedulerJson(family.Prediction);
            var mapping = DiffusersSchedulerConfig.Read(scheduler, $"the default scheduler of {file.Source}");
            return new StableDiffusionParts(unet, WriteUNetConfig(unetConfig), vae, text, SkipLayers: 0, tokenizer,
                mapping.Schedule, mapping.Options.Prediction, mapping.Sampler, mapping.Options, scheduler, family.Name);
        }
        catch
        {
            unet?.Dispose();
            vae?.Dispose();
            text?.Dispose();
            throw;
        }
    }

    private static ITensorFile Open(string path)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        return extension switch
        {
            ".safetensors" => SafeTensorsFile.Open(path),
            ".ckpt" or ".pt" or ".pth" or ".bin" => TorchCheckpointFile.Open(path),
            _ => throw new ArgumentException($"'{path}' is neither a .safetensors nor a .ckpt file; Stable Diffusion single files are one or the other.", nameof(path)),
        };
    }

    private static ClipTokenizer ReadTokenizer(string tokenizerFolder)
    {
        const string how = "A Stable Diffusion single file holds no tokenizer: give the tokenizer/ folder of a diffusers Stable Diffusion model "
                           + "(any SD 1.x model's for an SD 1.x file, any SD 2.x model's for SD 2.x; for example runwayml/stable-diffusion-v1-5/tokenizer "
                           + "or stabilityai/stable-diffusion-2-1/tokenizer), which holds CLIP's vocabulary (vocab.json, merges.txt).";
        if (string.IsNullOrEmpty(tokenizerFolder)) throw new ArgumentException($"No tokenizer folder was given. {how}", nameof(tokenizerFolder));
        try
        {
            return ClipTokenizer.FromFolder(tokenizerFolder);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new DirectoryNotFoundException($"The tokenizer folder '{tokenizerFolder}' does not exist. {how}", e);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"The tokenizer folder '{tokenizerFolder}' lacks {Path.GetFileName(e.FileName)}. {how}", e.FileName, e);
        }
    }

    // Every name is a network's or known not to be weights; anything else is an error naming it, before any loading.
    private static void CheckNames(ITensorFile file, StableDiffusionFamily family)
    {
        var unknown = file.Names.Where(n => StableDiffusionFamily.Component(n) == LdmComponent.Unknown).ToList();
        if (unknown.Count > 0)
            throw new CheckpointFormatException($"{file.Source} has {string.Join(", ", unknown.Take(5))}{(unknown.Count > 5 ? $" and {unknown.Count - 5} more" : "")}, which belong to no part of a {family.Name} checkpoint.");
        if (family.Vae is null)
            throw new CheckpointFormatException($"{file.Source} holds no autoencoder ({LdmVaeKeys.Prefix}*); this library loads whole Stable Diffusion checkpoints.");
        if (family.TextEncoder == LdmTextEncoderLayout.None)
            throw new CheckpointFormatException($"{file.Source} holds no text encoder ({LdmClipTextKeys.Prefix}* or {OpenClipTextKeys.StableDiffusion2Prefix}*); this library loads whole Stable Diffusion checkpoints.");
    }

    /// <summary>The diffusers UNet configuration of the family's layout, as diffusers' <c>create_unet_diffusers_config</c> makes it.</summary>
    internal static UNet2DConditionModelConfig UNetConfig(StableDiffusionFamily family, LdmArchitectureChoices choices)
    {
        var layout = family.UNet;
        bool sd1 = family.Version == StableDiffusionVersion.StableDiffusion1;
        int[] heads = sd1 ? [choices.StableDiffusion1Heads]
            : [.. layout.BlockOutChannels.Select(c => c % choices.StableDiffusion2HeadChannels == 0 ? c / choices.StableDiffusion2HeadChannels
                : throw new CheckpointFormatException($"A UNet level of {c} channels does not split into heads of {choices.StableDiffusion2HeadChannels} channels, as {family.Name} has."))];
        int vaeScale = 1 << (family.Vae!.BlockOutChannels.Length - 1);
        var config = new UNet2DConditionModelConfig
        {
            SampleSize = family.ImageSize / vaeScale,
            InChannels = layout.InChannels,
            OutChannels = layout.OutChannels,
            FlipSinToCos = true,
            FreqShift = 0,
            DownBlockTypes = layout.DownBlockTypes,
            UpBlockTypes = layout.UpBlockTypes,
            BlockOutChannels = layout.BlockOutChannels,
            LayersPerBlock = [layout.LayersPerBlock],
            ActFn = "silu",
            NormNumGroups = choices.NormGroups,
            NormEps = 1e-5,
            CrossAttentionDim = layout.CrossAttentionDim,
            TransformerLayersPerBlock = layout.TransformerLayersPerBlock.Distinct().Count() == 1 ? [layout.TransformerLayersPerBlock[0]] : layout.TransformerLayersPerBlock,
            AttentionHeadDim = heads,
            UseLinearProjection = layout.UseLinearProjection,
            UpcastAttention = family.UpcastAttention,
            TimeEmbeddingDim = layout.TimeEmbeddingDim == 4 * layout.BlockOutChannels[0] ? null : layout.TimeEmbeddingDim,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"The UNet of this {family.Name} file cannot be built: {e.Message}", e);
        }
        return config;
    }

    /// <summary>The autoencoder configuration of the family's layout (SD's scaling factor 0.18215).</summary>
    internal static AutoencoderKLConfig VaeConfig(StableDiffusionFamily family, LdmArchitectureChoices choices)
    {
        var layout = family.Vae!;
        var config = new AutoencoderKLConfig
        {
            InChannels = layout.InChannels,
            OutChannels = layout.OutChannels,
            DownBlockTypes = [.. layout.BlockOutChannels.Select(_ => AutoencoderKLConfig.DownEncoderBlock)],
            UpBlockTypes = [.. layout.BlockOutChannels.Select(_ => AutoencoderKLConfig.UpDecoderBlock)],
            BlockOutChannels = layout.BlockOutChannels,
            LayersPerBlock = layout.LayersPerBlock,
            LatentChannels = layout.LatentChannels,
            NormNumGroups = choices.NormGroups,
            SampleSize = family.ImageSize,
            ScalingFactor = 0.18215,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"The autoencoder of this {family.Name} file cannot be built: {e.Message}", e);
        }
        return config;
    }

    // SD 1.x: transformers' CLIPTextModel names under cond_stage_model.transformer.; the shape of openai's ViT-L/14 text tower.
    private static ClipTextModel LoadClip(ITensorFile file, LdmArchitectureChoices choices)
    {
        var shapes = file.Names.Where(n => n.StartsWith(LdmClipTextKeys.Prefix, StringComparison.Ordinal))
            .ToDictionary(n => LdmClipTextKeys.ToTransformers(n[LdmClipTextKeys.Prefix.Length..]), file.Shape, StringComparer.Ordinal);
        long[] Shape(string name) => shapes.TryGetValue(name, out var shape) ? shape
            : throw new CheckpointFormatException($"{file.Source} lacks the text encoder's {LdmClipTextKeys.Prefix}{name}.");
        var tokens = Shape("text_model.embeddings.token_embedding.weight");
        int width = (int)tokens[1];
        if (width % choices.TextHeadWidth != 0)
            throw new CheckpointFormatException($"{file.Source} has a text encoder of width {width}, which does not split into heads of {choices.TextHeadWidth} channels.");
        var config = ClipTextConfig.StableDiffusion1 with
        {
            VocabSize = (int)tokens[0],
            HiddenSize = width,
            IntermediateSize = (int)Shape("text_model.encoder.layers.0.mlp.fc1.weight")[0],
            NumHiddenLayers = LdmUNetLayout.Count(shapes.Keys, "text_model.encoder.layers."),
            NumAttentionHeads = width / choices.TextHeadWidth,
            MaxPositionEmbeddings = (int)Shape("text_model.embeddings.position_embedding.weight")[0],
            ProjectionDim = width,
        };
        var model = new ClipTextModel(config);
        try
        {
            ModuleWeights.Load(model, file, LdmClipTextKeys.Prefix, LdmClipTextKeys.Renamer(keepPositionIds: false));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    // SD 2.x: OpenCLIP's names under cond_stage_model.model., all layers but the last, gelu; q, k and v are stacked in the file.
    private static ClipTextModel LoadOpenClip(ITensorFile file, LdmArchitectureChoices choices)
    {
        const string prefix = OpenClipTextKeys.StableDiffusion2Prefix;
        string source = file.Source;
        var names = file.Names.Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        ClipTextConfig config;
        using (var scope = NewDisposeScope())
        {
            // Shapes without values (one shared element), for the checks and the configuration of OpenClipTextKeys.
            var one = zeros(1);
            var placeholders = names.ToDictionary(n => n, n => one.reshape([.. Enumerable.Repeat(1L, file.Shape(n).Length)]).expand(file.Shape(n)), StringComparer.Ordinal);
            int available = OpenClipTextKeys.LayerCount(placeholders);
            if (available < 2) throw new CheckpointFormatException($"{source} has an OpenCLIP text encoder of {available} layers; SD 2.x uses all but the last, so it needs at least 2.");
            OpenClipTextKeys.ToTransformers(placeholders, prefix, available - 1, source);
            config = OpenClipTextKeys.InferConfig(placeholders, prefix, available - 1, "gelu", choices.TextHeadWidth, source);
        }

        var model = new ClipTextModel(config);
        try
        {
            var state = model.state_dict();
            var loaded = new HashSet<string>(StringComparer.Ordinal);
            using var noGrad = no_grad();
            foreach (string name in names)
            {
                string[] targets = OpenClipTextKeys.Targets(name[prefix.Length..], config.NumHiddenLayers)
                    ?? throw new CheckpointFormatException($"{source} has {name}, which is no part of an OpenCLIP text encoder.");
                if (targets.Length == 0) continue;
                long[] shape = file.Shape(name);
                using var scope = NewDisposeScope();
                var value = file.Read(name, state[targets[0]].dtype);
                if (value.is_floating_point() && !value.isfinite().all().item<bool>())
                    throw new CheckpointFormatException($"{source} is corrupt: tensor '{name}' holds NaN or infinite values.");
                var parts = targets.Length == 1 ? [value] : value.chunk(targets.Length, 0);
                for (int i = 0; i < targets.Length; i++)
                {
                    var target = state[targets[i]];
                    if (!parts[i].shape.SequenceEqual(target.shape))
                        throw new CheckpointFormatException($"{source} does not fit the text encoder: tensor '{name}' has shape [{string.Join(", ", shape)}] where '{targets[i]}' is [{string.Join(", ", target.shape)}]{(targets.Length > 1 ? $" ({targets.Length} stacked)" : "")}.");
                    target.copy_(parts[i]);
                    loaded.Add(targets[i]);
                }
                value.Dispose();
            }
            var missing = state.Keys.Where(k => !loaded.Contains(k)).ToList();
            if (missing.Count > 0)
                throw new CheckpointFormatException($"{source} lacks the text encoder's {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? $" and {missing.Count - 5} more" : "")}.");
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// diffusers' scheduler for a single file with its default scheduler_type "pndm": the DDIMScheduler it builds from
    /// the original config (scaled_linear 0.00085–0.012, 1000 steps, steps_offset 1, clip_sample and set_alpha_to_one
    /// false), turned into a PNDMScheduler with skip_prk_steps, as <c>scheduler.config</c> then reads.
    /// </summary>
    internal static string SchedulerJson(LdmPrediction prediction)
    {
        var config = new JsonObject
        {
            ["_class_name"] = "PNDMScheduler",
            ["_diffusers_version"] = "0.21.4",
            ["beta_end"] = 0.012,
            ["beta_schedule"] = "scaled_linear",
            ["beta_start"] = 0.00085,
            ["clip_sample"] = false,
            ["num_train_timesteps"] = 1000,
            ["prediction_type"] = prediction == LdmPrediction.VPrediction ? "v_prediction" : "epsilon",
            ["set_alpha_to_one"] = false,
            ["skip_prk_steps"] = true,
            ["steps_offset"] = 1,
            ["timestep_spacing"] = "leading",
            ["trained_betas"] = null,
        };
        return config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The <c>unet/config.json</c> diffusers v0.21.4 writes for <paramref name="config"/>, every field written out.</summary>
    internal static string WriteUNetConfig(UNet2DConditionModelConfig config) => config.ToJson();
}
