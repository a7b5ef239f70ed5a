using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks.Legacy;

/// <summary>
/// Models and training states of the library's first UNet (options of kind "unet") load as diffusers' UNet2DModel
/// when one computes the same thing (unconditional and class-conditional networks whose attention heads fit
/// UNet2DModel's single head width): their weights are renamed on load, so they export, fine-tune and take adapters
/// like any UNet2DModel. The rest — text- and vector-conditional networks and heads spread over levels of different
/// widths — load into <see cref="UNetNoisePredictor"/>, which generates as before but is not trained further.
/// </summary>
internal static class FirstUNetFiles
{
    /// <summary>
    /// The diffusers network <see cref="UNetOptions"/> build: the UNet2DModel that computes what the first UNet of these
    /// settings computed (sines first in the time embedding), or, where none does, the diffusers network of their shape.
    /// </summary>
    public static NoisePredictorOptions Network(UNetOptions u)
    {
        ArgumentNullException.ThrowIfNull(u);
        return Converted(u) ?? DiffusersUNetShapes.Like(u);
    }

    /// <summary>The UNet2DModel options a file of <paramref name="u"/> loads as, or null when it loads into the first UNet.</summary>
    public static UNet2DModelOptions? Converted(UNetOptions u)
    {
        ArgumentNullException.ThrowIfNull(u);
        if (u.Condition.Kind is not (ConditionKind.None or ConditionKind.Class)) return null;
        return UNetAsUNet2DModel.Options(u, out _);
    }

    /// <summary>Why a first UNet of <paramref name="u"/> has no diffusers form (files of it load into the first UNet itself).</summary>
    public static string WhyNoDiffusersForm(UNetOptions u)
    {
        ArgumentNullException.ThrowIfNull(u);
        return UNetAsUNet2DModel.Options(u, out string? why) is null
            ? why!
            : "a diffusers UNet2DModel computes it, and its files load as one";
    }

    /// <summary>
    /// The network of a first-UNet file with its weights: a UNet2DModel holding them renamed, or the first UNet itself.
    /// <paramref name="weights"/> stay the caller's; <paramref name="source"/> names the file in errors.
    /// </summary>
    public static NoisePredictor Load(UNetOptions u, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var converted = Converted(u);
        NoisePredictor network = converted is null ? new UNetNoisePredictor(u) : new UNet2DModelNoisePredictor(converted);
        try
        {
            if (converted is null) ModuleWeights.Load(network, weights, source);
            else LoadRenamed(network, u, weights, source);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        return network;
    }

    /// <summary>
    /// Copies a first UNet's <paramref name="weights"/>, renamed, into <paramref name="network"/>, the UNet2DModel
    /// <see cref="Converted"/> gives for <paramref name="u"/>; the renamed copies are freed as soon as they are copied.
    /// </summary>
    public static void LoadRenamed(NoisePredictor network, UNetOptions u, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var renamed = Rename(u, weights, source);
        try
        {
            ModuleWeights.Load(network, renamed, source);
        }
        finally
        {
            foreach (var t in renamed.Values) t.Dispose();
        }
    }

    /// <summary>The weights of a first UNet whose file loads as UNet2DModel, under UNet2DModel's names (new tensors).</summary>
    public static Dictionary<string, Tensor> Rename(UNetOptions u, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        try
        {
            return UNetAsUNet2DModel.Weights(u, weights).ToDictionary(w => w.Name, w => w.Value, StringComparer.Ordinal);
        }
        catch (InvalidOperationException e)
        {
            throw new CheckpointFormatException($"{source} has weights that do not fit the network its header describes: {e.Message}", e);
        }
    }
}
