using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>ResnetBlock2D</c>: GroupNorm, activation, 3×3 convolution, the timestep embedding added (or, with
/// "scale_shift", scaling and shifting the second GroupNorm's output), GroupNorm, activation, dropout, 3×3
/// convolution, plus the (1×1-projected) input, divided by the output scale factor.
/// </summary>
internal sealed class ResnetBlock2D : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear? time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;
    private readonly Func<Tensor, Tensor> _activation;
    private readonly bool _scaleShift;
    private readonly double _dropout;
    private readonly double _outputScale;

    public ResnetBlock2D(int inChannels, int outChannels, int timeChannels, UNet2DModelOptions o, double outputScale = 1.0)
        : this(inChannels, outChannels, timeChannels, o.NormNumGroups, o.NormEps, o.ActFn, o.ResnetTimeScaleShift == "scale_shift", o.Dropout, outputScale)
    {
    }

    // timeChannels: the timestep embedding's width, or null for a block without one (the autoencoder's, diffusers'
    // temb_channels=None), which then has no time_emb_proj and is called without one.
    public ResnetBlock2D(int inChannels, int outChannels, int? timeChannels, int groups, double eps, string activation,
        bool scaleShift, double dropout, double outputScale = 1.0)
        : base(nameof(ResnetBlock2D))
    {
        _scaleShift = scaleShift;
        _activation = Activation.Get(activation);
        _dropout = dropout;
        _outputScale = outputScale;
        norm1 = NormLayers.GroupNorm(groups, inChannels, eps);
        conv1 = Conv2d(inChannels, outChannels, 3, padding: 1);
        if (timeChannels is { } tc) time_emb_proj = Linear(tc, _scaleShift ? 2 * outChannels : outChannels);
        norm2 = NormLayers.GroupNorm(groups, outChannels, eps);
        conv2 = Conv2d(outChannels, outChannels, 3, padding: 1);
        if (inChannels != outChannels) conv_shortcut = Conv2d(inChannels, outChannels, 1);
        RegisterComponents();
    }

    /// <summary>The block without a timestep embedding (constructed with timeChannels null).</summary>
    public Tensor forward(Tensor x) => forward(x, null!);

    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        using var scope = NewDisposeScope();
        // Each intermediate is freed as soon as the next exists: at 512×512 one feature map of the autoencoder is
        // 128–256 MiB, and keeping all of a block's until it returns doubles the decoder's peak memory.
        // call, not forward: it runs forward hooks, where LoRA training attaches its adapters (costs nothing without one).
        var t = time_emb_proj is null || timeEmbedding is null
            ? null
            : time_emb_proj.call(_activation(timeEmbedding)).unsqueeze(-1).unsqueeze(-1);
        var h = norm1.forward(x);
        h = Then(h, _activation);
        h = Then(h, conv1.call);
        if (t is not null && !_scaleShift) h = Then(h, v => v + t);
        h = Then(h, norm2.forward);
        if (t is not null && _scaleShift)
        {
            var parts = t.chunk(2, 1);
            h = Then(h, v => v * (parts[0] + 1) + parts[1]);
        }
        h = Then(h, _activation);
        if (_dropout > 0) h = Then(h, v => functional.dropout(v, _dropout, training));
        h = Then(h, conv2.call);
        var skip = conv_shortcut is null ? x : conv_shortcut.call(x);
        var y = Then(h, v => skip + v);
        if (_outputScale != 1.0) y = Then(y, v => v / _outputScale);
        return y.MoveToOuterDisposeScope();
    }

    // The next intermediate from the current one, which is then freed (autograd keeps what it saved on its own).
    private static Tensor Then(Tensor current, Func<Tensor, Tensor> next)
    {
        var result = next(current);
        if (!ReferenceEquals(result, current)) current.Dispose();
        return result;
    }
}
