using Microsoft.ML.Diffusion.Checkpoints;
using static TorchSharp.torch;

using Microsoft.ML.Diffusion.Networks.Diffusers;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers model folder as <c>UNet2DModel.save_pretrained</c> writes it: <c>config.json</c> and the weights in
/// <c>diffusion_pytorch_model.safetensors</c> or, from older diffusers, the PyTorch pickle
/// <c>diffusion_pytorch_model.bin</c> (read with TorchSharp.PyBridge); float32, float16 or bfloat16, held as float32
/// here. Every tensor the network has must be in the file with its shape, and no other; errors name the file and the tensor.
/// </summary>
internal static class DiffusersUNetFolder
{
    public const string ConfigFile = "config.json";
    public const string SafeTensorsFile = "diffusion_pytorch_model.safetensors";
    public const string PickleFile = "diffusion_pytorch_model.bin";

    /// <summary>Builds the network the folder describes and loads its weights.</summary>
    public static UNet2DModelNoisePredictor Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The diffusers model folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"'{folder}' has no {ConfigFile}; it is not a diffusers model folder.", configPath);
        var options = UNet2DModelConfig.Read(File.ReadAllText(configPath), $"'{configPath}'");

        string weightsPath = Path.Combine(folder, SafeTensorsFile);
        bool pickle = !File.Exists(weightsPath) && File.Exists(Path.Combine(folder, PickleFile));
        if (pickle) weightsPath = Path.Combine(folder, PickleFile);
        else if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"'{folder}' has neither {SafeTensorsFile} nor {PickleFile}.", weightsPath);
        var weights = pickle ? ReadPickle(weightsPath) : SafeTensors.Read(File.ReadAllBytes(weightsPath), $"'{weightsPath}'");
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

    // torch.save's zip of a pickled state dict. Anything else (a whole pickled model, the legacy format, a truncated zip) fails naming the file.
    private static Dictionary<string, Tensor> ReadPickle(string path)
    {
        // TorchSharp.PyBridge takes any file that is not a zip for the old format; tell the two apart first.
        byte[] head = PyTorchFileFormat.ReadHead(path);
        if (PyTorchFileFormat.IsLegacy(head))
            throw new CheckpointFormatException($"'{path}' was saved in the old PyTorch format (before PyTorch 1.6, or with _use_new_zipfile_serialization=False), which this library cannot read; save the state dict again with a current torch.save, or as safetensors.");
        if (!PyTorchFileFormat.IsZip(head))
            throw new CheckpointFormatException($"'{path}' is not a PyTorch checkpoint: it is neither the zip archive torch.save writes nor PyTorch's old format.");
        System.Collections.Hashtable table;
        try
        {
            using var stream = File.OpenRead(path);
            table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(stream);
        }
        catch (Exception e) when (e is InvalidDataException or NotImplementedException or InvalidCastException or InvalidOperationException
                                      or EndOfStreamException or Razorvine.Pickle.PickleException or ArgumentException)
        {
            throw new CheckpointFormatException($"'{path}' is not a PyTorch state dict this library can read: {e.Message}", e);
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in table)
        {
            if (entry.Key is not string name || entry.Value is not Tensor tensor)
                throw new CheckpointFormatException($"'{path}' holds an entry '{entry.Key}' that is not a tensor; it is not a state dict.");
            result[name] = tensor;
        }
        return result;
    }
}
