using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.TextEncoders;

/// <summary>transformers' <c>CLIPMLP</c>: fc1, the configured activation (quick_gelu or gelu), fc2.</summary>
internal sealed class ClipMlp : Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly bool _quickGelu;

    public ClipMlp(ClipTextConfig config) : base(nameof(ClipMlp))
    {
        _quickGelu = config.HiddenAct switch
        {
            "quick_gelu" => true,
            "gelu" => false,
            _ => throw new ArgumentException($"hidden_act is \"{config.HiddenAct}\"; supported are \"quick_gelu\" and \"gelu\".", nameof(config)),
        };
        fc1 = Linear(config.HiddenSize, config.IntermediateSize);
        fc2 = Linear(config.IntermediateSize, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var h = fc1.call(x);
        h = _quickGelu ? h * functional.sigmoid(h * 1.702) : functional.gelu(h);   // quick_gelu: openai's approximation of gelu
        return fc2.call(h).MoveToOuterDisposeScope();
    }
}
