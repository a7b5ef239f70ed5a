using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Legacy;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// LoRA adapters trained on the library's first UNet, for a model whose first-UNet file loaded as UNet2DModel
/// (<see cref="DiffusionModel.ConvertedFrom"/>): their layers name the first UNet's modules, which the model no longer
/// has, so they are renamed to UNet2DModel's as the weights were on load (<see cref="UNetAsUNet2DModel.Lora"/>; the fused
/// qkv's layer becomes to_q's, to_k's and to_v's). Layers that already name UNet2DModel's modules stay as they are.
/// Kohya's underscored names are not renamed: the library writes its pixel models' adapters with dotted names.
/// </summary>
internal static class FirstUNetLora
{
    /// <summary>
    /// <paramref name="adapter"/> with its first-UNet layers renamed for <paramref name="model"/>: a new adapter that takes
    /// over the given one's layers (the renamed ones are disposed), or the given one itself when there is nothing to rename.
    /// On failure the given adapter is as it was.
    /// </summary>
    public static LoraAdapter Renamed(DiffusionModel model, LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adapter);
        if (model.ConvertedFrom is not { } first || adapter.Layout == LoraLayout.Kohya) return adapter;
        var layers = new List<LoraLayer>(adapter.Layers.Count);
        var replaced = new List<LoraLayer>();
        try
        {
            foreach (var layer in adapter.Layers)
            {
                // A pixel model has only the UNet: a layer of no named network is the UNet's.
                var parts = layer.Component == LoraComponent.TextEncoder ? null : UNetAsUNet2DModel.Lora(first, layer.Module, layer.Down, layer.Up);
                if (parts is null)
                {
                    layers.Add(layer);
                    continue;
                }
                replaced.Add(layer);
                foreach (var (module, down, up) in parts)
                    layers.Add(new LoraLayer(layer.Component, module, $"{layer.Source} (as {module})", down.DetachFromDisposeScope(), up.DetachFromDisposeScope(), layer.Alpha));
            }
        }
        catch
        {
            foreach (var layer in layers.Except(adapter.Layers)) layer.Dispose();
            throw;
        }
        if (replaced.Count == 0) return adapter;
        foreach (var layer in replaced) layer.Dispose();
        return adapter.WithLayers(layers);
    }
}
