using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// A trainable low-rank adapter of one Linear or Conv2d layer: its output is scale · up(down(x)), added to the layer's
/// own. For a Linear, down is (rank, in) and up (out, rank); for a convolution, down is a convolution to rank channels
/// with the layer's kernel, stride, padding and dilation, and up a 1×1 convolution (diffusers' LoRAConv2dLayer). down is
/// drawn from N(0, 1/rank²) and up is zero (diffusers' initialisation), so a new adapter changes nothing. Parameters are
/// float32 on the layer's device, named diffusers' way (down, up).
/// </summary>
internal sealed class LoraModule : Module<Tensor, Tensor>
{
    private readonly Parameter down;
    private readonly Parameter up;
    private readonly long[] _stride;
    private readonly long[] _padding;
    private readonly long[] _dilation;

    /// <summary>Creates an adapter for <paramref name="layer"/> (a Linear, or a Conv2d with one group and zero padding); draws down from torch's global generator.</summary>
    public LoraModule(Module<Tensor, Tensor> layer, int rank, double scale) : base(nameof(LoraModule))
    {
        Scale = scale;
        Parameter weight;
        switch (layer)
        {
            case Linear linear:
                weight = linear.weight;
                (_stride, _padding, _dilation) = ([], [], []);
                break;
            case Conv2d conv:
                weight = conv.weight;
                if (conv.groups != 1 || conv.padding_mode != PaddingModes.Zeros || conv.padding is null)
                    throw new ArgumentException($"LoRA adapts convolutions with one group and explicit zero padding; this one has {conv.groups} groups and {conv.padding_mode} padding.", nameof(layer));
                (_stride, _padding, _dilation) = (conv.stride, conv.padding, conv.dilation);
                break;
            default:
                throw new ArgumentException($"LoRA adapts Linear and Conv2d layers, not {layer.GetType().Name}.", nameof(layer));
        }
        IsConvolution = weight.dim() == 4;
        long[] downShape = IsConvolution ? [rank, weight.shape[1], weight.shape[2], weight.shape[3]] : [rank, weight.shape[1]];
        long[] upShape = IsConvolution ? [weight.shape[0], rank, 1, 1] : [weight.shape[0], rank];
        using (NewDisposeScope())
        {
            // Created detached: a caller's dispose scope must not take the adapter's parameters with it.
            var d = empty(downShape, dtype: float32, device: weight.device);
            using (no_grad()) d.normal_(0, 1.0 / rank);
            down = (Parameter)Parameter(d.DetachFromDisposeScope()).DetachFromDisposeScope();
            up = (Parameter)Parameter(zeros(upShape, dtype: float32, device: weight.device).DetachFromDisposeScope()).DetachFromDisposeScope();
        }
        RegisterComponents();
    }

    /// <summary>A copy of <paramref name="source"/> with its own parameters (same values), attached to nothing.</summary>
    public LoraModule(LoraModule source) : base(nameof(LoraModule))
    {
        Scale = source.Scale;
        IsConvolution = source.IsConvolution;
        (_stride, _padding, _dilation) = (source._stride, source._padding, source._dilation);
        using (NewDisposeScope())
        using (no_grad())
        {
            down = (Parameter)Parameter(source.down.detach().clone().DetachFromDisposeScope()).DetachFromDisposeScope();
            up = (Parameter)Parameter(source.up.detach().clone().DetachFromDisposeScope()).DetachFromDisposeScope();
        }
        RegisterComponents();
    }

    /// <summary>alpha / rank, the factor on up(down(x)).</summary>
    public double Scale { get; }

    /// <summary>Whether the adapted layer is a convolution.</summary>
    public bool IsConvolution { get; }

    public long Rank => down.shape[0];

    /// <summary>(rank, in) or (rank, in, kh, kw).</summary>
    public Parameter Down => down;

    /// <summary>(out, rank) or (out, rank, 1, 1).</summary>
    public Parameter Up => up;

    /// <summary>Set when the adapter has computed an output: a layer that never runs its forward hooks never sets it.</summary>
    public bool HasRun { get; set; }

    /// <summary>scale · up(down(x)) in float32, returned in x's dtype (diffusers computes the adapter in its own dtype too).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        HasRun = true;
        var input = x.to(float32);
        Tensor h;
        if (IsConvolution)
        {
            h = Convolve(input, down, _stride, _padding, _dilation);
            h = functional.conv2d(h, up);
        }
        else
        {
            h = functional.linear(functional.linear(input, down), up);
        }
        if (Scale != 1.0) h = h * Scale;
        return h.to(x.dtype).MoveToOuterDisposeScope();
    }

    // libtorch's multi-threaded CPU input gradient of a 3×3 convolution with 8 or fewer outputs is wrong (see
    // Networks/OutputProjection): a low-rank down convolution is one, so it is computed with zero filters added.
    private static Tensor Convolve(Tensor x, Tensor weight, long[] stride, long[] padding, long[] dilation)
    {
        const int Safe = 16;
        long outputs = weight.shape[0];
        bool pointwise = weight.shape[2] == 1 && weight.shape[3] == 1;
        if (pointwise || outputs >= Safe) return functional.conv2d(x, weight, null, stride, padding, dilation);
        var padded = functional.pad(weight, [0, 0, 0, 0, 0, 0, 0, Safe - outputs]);
        return functional.conv2d(x, padded, null, stride, padding, dilation).narrow(1, 0, outputs);
    }
}
