using Microsoft.ML.Diffusion.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>
/// A diffusers pipeline's <c>text_encoder/</c> folder as transformers' <c>save_pretrained</c> writes it:
/// <c>config.json</c> and <c>model.safetensors</c> or the PyTorch pickle <c>pytorch_model.bin</c> (float32, float16
/// or bfloat16, held as float32 here). Every tensor the encoder has must be in the file with its shape, and no other,
/// except the position_ids buffer files from before transformers 4.31 hold, which is accepted and not kept.
/// </summary>
internal static class ClipTextEncoderFolder
{
    public const string ConfigFile = "config.json";
    public const string SafeTensorsFile = "model.safetensors";
    public const string PickleFile = "pytorch_model.bin";

    /// <summary>The buffer older transformers saved with the weights: the positions 0…76, which the encoder computes.</summary>
    public const string PositionIdsKey = "text_model.embeddings.position_ids";

    /// <summary>Builds the encoder the folder describes and loads its weights; in eval mode.</summary>
    public static ClipTextModel Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The text encoder folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"'{folder}' has no {ConfigFile}; it is not a transformers text encoder folder.", configPath);
        var config = ClipTextConfig.Read(File.ReadAllText(configPath), $"'{configPath}'");

        string weightsPath = Path.Combine(folder, SafeTensorsFile);
        bool pickle = !File.Exists(weightsPath) && File.Exists(Path.Combine(folder, PickleFile));
        if (pickle) weightsPath = Path.Combine(folder, PickleFile);
        else if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"'{folder}' has neither {SafeTensorsFile} nor {PickleFile}.", weightsPath);
        if (!pickle) return LoadStreamed(config, weightsPath);
        var weights = ReadPickle(weightsPath);
        try
        {
            return Create(config, weights, $"'{weightsPath}'");
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    // Tensor by tensor from the file (SD 2's text encoder is 1.4 GB in float32); the position_ids buffer of older files is left out.
    private static ClipTextModel LoadStreamed(ClipTextConfig config, string weightsPath)
    {
        var model = new ClipTextModel(config);
        try
        {
            using var file = Checkpoints.SafeTensorsFile.Open(weightsPath);
            ModuleWeights.Load(model, file, rename: name => name == PositionIdsKey ? null : name);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// <summary>
    /// Builds the encoder for <paramref name="config"/> and copies <paramref name="weights"/> (transformers' names, as
    /// <see cref="Interchange.SingleFile.OpenClipTextKeys"/> gives them for a single file) into it; in eval mode. The
    /// weights stay the caller's; <paramref name="source"/> names them in errors.
    /// </summary>
    public static ClipTextModel Create(ClipTextConfig config, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        var used = weights.ContainsKey(PositionIdsKey) ? weights.Where(kv => kv.Key != PositionIdsKey).ToDictionary() : weights;
        var model = new ClipTextModel(config);
        try
        {
            ModuleWeights.Load(model, used, source);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    // torch.save's zip of a pickled state dict, through the restricted reader: tensors and plain containers only, any
    // other call in the pickle refused naming it (a checkpoint never runs code).
    private static Dictionary<string, Tensor> ReadPickle(string path)
    {
        using var file = Checkpoints.TorchCheckpointFile.Open(path);
        return file.Names.ToDictionary(name => name, name => file.Read(name), StringComparer.Ordinal);
    }
}
