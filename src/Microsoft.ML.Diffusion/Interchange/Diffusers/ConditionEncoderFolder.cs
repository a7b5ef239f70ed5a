using System.Text.Json;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Storage;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A text- or vector-conditional model trained here, as a folder: diffusers' <c>UNet2DConditionModel</c> in
/// <c>unet/</c> (config.json and diffusion_pytorch_model.safetensors, what <c>UNet2DConditionModel.from_pretrained</c>
/// reads) and beside it, in the library's own format, the condition encoder that makes its
/// <c>encoder_hidden_states</c>: <c>condition_encoder/config.json</c> (the condition's settings) and
/// <c>condition_encoder/model.safetensors</c> (its weights under the library's names). diffusers has no class for the
/// encoder; the library reads the folder back whole.
/// </summary>
internal static class ConditionEncoderFolder
{
    public const string Folder = "condition_encoder";
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";

    /// <summary>Whether <paramref name="folder"/> holds a condition encoder (a model of this kind).</summary>
    public static bool IsIn(string folder) => Directory.Exists(Path.Combine(folder, Folder));

    /// <summary>Writes the UNet and the encoder of <paramref name="network"/> under <paramref name="folder"/>.</summary>
    public static void Save(UNet2DConditionNoisePredictor network, UNet2DConditionOptions options, string folder)
    {
        var encoder = network.ConditionEncoder ?? throw new InvalidOperationException("The network has no condition encoder.");
        string unetConfig = options.Config.ToJson();
        var pt = new Dictionary<string, string> { ["format"] = "pt" };
        byte[] unetWeights = SafeTensors.Write(network.UNet.state_dict().Select(kv => (kv.Key, kv.Value)), pt);
        string encoderConfig = JsonSerializer.Serialize(options.Condition, new JsonSerializerOptions(DiffusionJson.Options) { WriteIndented = true }) + "\n";
        byte[] encoderWeights = SafeTensors.Write(encoder.state_dict().Select(kv => (kv.Key, kv.Value)), pt);
        Directory.CreateDirectory(Path.Combine(folder, "unet"));
        Directory.CreateDirectory(Path.Combine(folder, Folder));
        AtomicFile.Write(Path.Combine(folder, "unet", DiffusersUNetFolder.SafeTensorsFile), s => s.Write(unetWeights));
        AtomicFile.Write(Path.Combine(folder, "unet", DiffusersUNetFolder.ConfigFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(unetConfig)));
        AtomicFile.Write(Path.Combine(folder, Folder, WeightsFile), s => s.Write(encoderWeights));
        AtomicFile.Write(Path.Combine(folder, Folder, ConfigFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(encoderConfig)));
    }

    /// <summary>Builds the network <paramref name="folder"/> describes and loads the UNet's and the encoder's weights; it is in evaluation mode.</summary>
    public static UNet2DConditionNoisePredictor Load(string folder)
    {
        string unet = Path.Combine(folder, "unet");
        string encoder = Path.Combine(folder, Folder);
        string conditionPath = Path.Combine(encoder, ConfigFile), encoderWeights = Path.Combine(encoder, WeightsFile);
        string unetWeights = Path.Combine(unet, DiffusersUNetFolder.SafeTensorsFile);
        foreach (string path in new[] { conditionPath, encoderWeights, unetWeights })
            if (!File.Exists(path)) throw new FileNotFoundException($"'{folder}' has no {Path.GetRelativePath(folder, path)}; a conditional model's folder needs the UNet's and the condition encoder's configuration and weights.", path);
        var config = UNet2DConditionModelConfig.Load(Path.Combine(unet, DiffusersUNetFolder.ConfigFile));
        ConditioningOptions condition;
        try
        {
            condition = JsonSerializer.Deserialize<ConditioningOptions>(File.ReadAllText(conditionPath), DiffusionJson.Options)
                ?? throw new CheckpointFormatException($"'{conditionPath}' is null; it must describe the condition.");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"'{conditionPath}' is not a condition's settings: {e.Message}", e);
        }
        UNet2DConditionOptions options;
        try
        {
            options = UNet2DConditionOptions.Encoded(config, condition);
            options.Validate();
            if (condition.Kind is not (ConditionKind.Text or ConditionKind.Vector))
                throw new ArgumentException($"the condition is {condition.Kind}; the condition encoder takes text or vectors.");
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"'{folder}' describes a conditional model this library cannot build: {e.Message}", e);
        }
        var network = new UNet2DConditionNoisePredictor(options);
        try
        {
            Load(network.UNet, unetWeights);
            Load(network.ConditionEncoder!, encoderWeights);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.eval();
        return network;
    }

    private static void Load(TorchSharp.torch.nn.Module module, string path)
    {
        var weights = SafeTensors.Read(File.ReadAllBytes(path), $"'{path}'");
        try
        {
            ModuleWeights.Load(module, weights, $"'{path}'");
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }
}
