namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>A sampler name that is not registered with <see cref="DiffusionSamplers"/> in this process.</summary>
public sealed class UnknownSamplerException(string name)
    : ArgumentException($"No sampler is registered as '{name}' (registered: {string.Join(", ", DiffusionSamplers.Names)}). " +
                        "Register it with DiffusionSamplers.Register before using or loading a stage that names it.")
{
    /// <summary>The name that was asked for.</summary>
    public string SamplerName { get; } = name;
}
