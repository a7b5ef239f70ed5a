using Microsoft.ML.Diffusion.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Autoencoders;

/// <summary>
/// A diffusers AutoencoderKL folder (a pipeline's <c>vae/</c>) as <c>save_pretrained</c> writes it: <c>config.json</c>
/// and <c>diffusion_pytorch_model.safetensors</c> (float32, float16 or bfloat16, held as float32 here). Every tensor
/// the network has must be in the file with its shape, and no other, after the pre-0.14 attention names are
/// renamed as diffusers renames them; errors name the file and the tensor.
/// </summary>
internal static class AutoencoderKLFolder
{
    public const string ConfigFile = "config.json";
    public const string SafeTensorsFile = "diffusion_pytorch_model.safetensors";
    public const string PickleFile = "diffusion_pytorch_model.bin";

    // Older folders hold a PyTorch pickle, read by the restricted reader (tensors and plain containers only).
    private static Dictionary<string, Tensor> ReadPickle(string path)
    {
        using var file = TorchCheckpointFile.Open(path);
        return file.Names.ToDictionary(name => name, name => file.Read(name));
    }

    /// <summary>Builds the VAE the folder describes and loads its weights; the network is in evaluation mode.</summary>
    public static AutoencoderKL Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The diffusers VAE folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"'{folder}' has no {ConfigFile}; it is not a diffusers model folder.", configPath);
        var config = AutoencoderKLConfig.Read(File.ReadAllText(configPath), $"'{configPath}'");
        string weightsPath = Path.Combine(folder, SafeTensorsFile);
        string picklePath = Path.Combine(folder, PickleFile);
        if (!File.Exists(weightsPath) && !File.Exists(picklePath))
            throw new FileNotFoundException($"'{folder}' has neither {SafeTensorsFile} nor {PickleFile}.", weightsPath);
        var weights = File.Exists(weightsPath) ? SafeTensors.Read(File.ReadAllBytes(weightsPath), $"'{weightsPath}'") : ReadPickle(picklePath);
        try
        {
            return Load(config, weights, $"'{weightsPath}'");
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Builds the VAE <paramref name="config"/> describes and copies <paramref name="weights"/> (diffusers' names; the
    /// caller keeps and disposes them) into it; <paramref name="source"/> names their file in errors.
    /// </summary>
    public static AutoencoderKL Load(AutoencoderKLConfig config, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        var network = new AutoencoderKL(config);
        try
        {
            var names = network.state_dict().Keys.ToHashSet(StringComparer.Ordinal);
            ModuleWeights.Load(network, DeprecatedAttentionNames.Rename(weights, names), source);
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
