using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks.Diffusers;

/// <summary>diffusers' <c>get_activation</c>: the activation functions a configuration names.</summary>
internal static class Activation
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "silu" or "swish" => x => functional.silu(x),
        "mish" => x => functional.mish(x),
        "gelu" => x => functional.gelu(x),
        "relu" => x => functional.relu(x),
        _ => throw new ArgumentException($"act_fn is \"{name}\"; supported are silu (swish), mish, gelu and relu.", nameof(name)),
    };
}
