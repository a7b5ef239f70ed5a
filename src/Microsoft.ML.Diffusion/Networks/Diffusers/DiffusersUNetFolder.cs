using Microsoft.ML.Diffusion.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// A diffusers model folder as <c>UNet2DModel.save_pretrained</c> writes it: <c>config.json</c> and the weights in
/// <c>diffusion_pytorch_model.safetensors</c> (float32, float16 or bfloat16; held as float32 here). Every tensor the
/// network has must be in the file with its shape, and no other; errors name the file and the tensor.
/// </summary>
internal static class DiffusersUNetFolder
{
    public const string ConfigFile = "config.json";
    public const string SafeTensorsFile = "diffusion_pytorch_model.safetensors";

    /// <summary>Builds the network the folder describes and loads its weights.</summary>
    public static UNet2DModelNoisePredictor Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The diffusers model folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"'{folder}' has no {ConfigFile}; it is not a diffusers model folder.", configPath);
        var options = UNet2DModelConfig.Read(File.ReadAllText(configPath), $"'{configPath}'");

        string weightsPath = Path.Combine(folder, SafeTensorsFile);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"'{folder}' has no {SafeTensorsFile}.", weightsPath);
        var weights = SafeTensors.Read(File.ReadAllBytes(weightsPath), $"'{weightsPath}'");
        var network = new UNet2DModelNoisePredictor(options);
        try
        {
            ModuleWeights.Load(network, weights, $"'{weightsPath}'");
        }
        catch
        {
            network.Dispose();
            throw;
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        network.eval();
        return network;
    }
}
