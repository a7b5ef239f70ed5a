using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>
/// diffusers' <c>TimestepEmbedding</c>: Linear, activation (SiLU unless the configuration names another), Linear, and
/// optionally a second activation (UNet2DConditionModel's timestep_post_act). Parameter names linear_1, linear_2.
/// </summary>
internal sealed class TimestepEmbedding : Module<Tensor, Tensor>
{
    private readonly Linear linear_1;
    private readonly Linear linear_2;
    private readonly Func<Tensor, Tensor> _activation;
    private readonly Func<Tensor, Tensor>? _postActivation;

    public TimestepEmbedding(int inChannels, int channels, string activation = "silu", string? postActivation = null)
        : base(nameof(TimestepEmbedding))
    {
        _activation = Activation.Get(activation);
        _postActivation = postActivation is null ? null : Activation.Get(postActivation);
        linear_1 = Linear(inChannels, channels);
        linear_2 = Linear(channels, channels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var hidden = _activation(linear_1.forward(x));
        if (_postActivation is null) return linear_2.forward(hidden);
        using var projected = linear_2.forward(hidden);
        return _postActivation(projected);
    }
}

/// <summary>
/// diffusers' <c>GaussianFourierProjection</c> as UNet2DModel builds it (scale 16, log input): sin and cos of
/// 2π·log(σ)·W. Its random frequencies are stored twice in diffusers' files, as W and weight; both are kept.
/// </summary>
internal sealed class GaussianFourierProjection : Module<Tensor, Tensor>
{
    private readonly Parameter W;
    private readonly Parameter weight;

    public GaussianFourierProjection(int size) : base(nameof(GaussianFourierProjection))
    {
        // Detached, so that the caller's construction scope (the UNet builds inside one) does not dispose them.
        using var frequencies = randn(size) * 16;
        W = (Parameter)new Parameter(frequencies.clone().DetachFromDisposeScope(), requires_grad: false).DetachFromDisposeScope();
        weight = (Parameter)new Parameter(frequencies.clone().DetachFromDisposeScope(), requires_grad: false).DetachFromDisposeScope();
        RegisterComponents();
    }

    public override Tensor forward(Tensor sigmas)
    {
        using var scope = NewDisposeScope();
        var projected = sigmas.to(float32).log().unsqueeze(1) * weight.unsqueeze(0) * (2 * Math.PI);
        return cat([projected.sin(), projected.cos()], 1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers' class embedding (<c>nn.Embedding(num_class_embeds, time_embed_dim)</c>, parameter name weight), added
/// to the timestep embedding. Built here rather than with TorchSharp's Embedding, whose weight does not survive the
/// network's construction scope.
/// </summary>
internal sealed class ClassEmbedding : Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public ClassEmbedding(int classes, int channels) : base(nameof(ClassEmbedding))
    {
        weight = (Parameter)new Parameter(randn(classes, channels).DetachFromDisposeScope()).DetachFromDisposeScope();
        RegisterComponents();
    }

    public override Tensor forward(Tensor labels) => weight.index_select(0, labels);
}
