using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>transformers' <c>CLIPEncoder</c>: the encoder layers in order (parameter names layers.N.…).</summary>
internal sealed class ClipEncoder : Module<Tensor, Tensor>
{
    private readonly ModuleList<ClipEncoderLayer> layers = new();

    public ClipEncoder(ClipTextConfig config) : base(nameof(ClipEncoder))
    {
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(new ClipEncoderLayer(config));
        RegisterComponents();
    }

    public int LayerCount => layers.Count;

    public override Tensor forward(Tensor x) => forward(x, 0, layers.Count);

    /// <summary>Layers <paramref name="start"/> to <paramref name="end"/> (exclusive) applied to <paramref name="x"/>.</summary>
    public Tensor forward(Tensor x, int start, int end)
    {
        using var scope = NewDisposeScope();
        var h = x.alias();
        for (int i = start; i < end; i++) h = layers[i].forward(h);
        return h.MoveToOuterDisposeScope();
    }
}
