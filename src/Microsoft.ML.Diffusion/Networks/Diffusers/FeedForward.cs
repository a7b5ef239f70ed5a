using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>FeedForward</c> with its default GEGLU: net.0 (GEGLU, to 4× the width), net.1 (dropout), net.2 (Linear
/// back to the width).
/// </summary>
internal sealed class FeedForward : Module<Tensor, Tensor>
{
    private readonly ModuleList<Module<Tensor, Tensor>> net;

    public FeedForward(int dim, double dropout) : base(nameof(FeedForward))
    {
        int inner = dim * 4;
        net = new ModuleList<Module<Tensor, Tensor>>(new GEGLU(dim, inner), Dropout(dropout), Linear(inner, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var y = net[2].call(net[1].forward(net[0].forward(x)));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers' <c>GEGLU</c>: one projection to twice the output width, halves h and gate, h · GELU(gate) (exact GELU).</summary>
internal sealed class GEGLU : Module<Tensor, Tensor>
{
    private readonly Linear proj;

    public GEGLU(int inFeatures, int outFeatures) : base(nameof(GEGLU))
    {
        proj = Linear(inFeatures, outFeatures * 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var halves = proj.call(x).chunk(2, -1);
        return (halves[0] * functional.gelu(halves[1])).MoveToOuterDisposeScope();
    }
}
