using Microsoft.ML.Diffusion.Conditioning;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The network a diffusion model trains and samples with: given noisy images x_t (N, C, H, W), their
/// timesteps t (N) and optionally a condition, it predicts the noise (or v, or x₀) in x_t.
/// Derive from it, give it a <see cref="NoisePredictorOptions"/> record, and register both with
/// <see cref="NoisePredictors"/>: the trainer, <see cref="Models.DiffusionModel"/>, checkpoints, model zips,
/// the ML.NET stages and the command line then work with it like with the built-in diffusers networks.
/// </summary>
public abstract class NoisePredictor : Module<Tensor, Tensor, Tensor>
{
    /// <summary>Validates <paramref name="options"/> and keeps them; the network is rebuilt from them on load.</summary>
    protected NoisePredictor(string name, NoisePredictorOptions options) : base(name)
    {
        Devices.DiffusionDevice.EnsureInitialized();   // native settings before the derived constructor makes the first weight
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
    }

    /// <summary>The configuration the network was built from; saved with every model.</summary>
    public NoisePredictorOptions Options { get; }

    /// <summary>Image shape (C, H, W) the network takes and returns.</summary>
    public long[] ImageShape => Options.ImageShape;

    /// <summary>Whether the network takes a condition.</summary>
    public bool IsConditional => Options.Condition.Kind != ConditionKind.None;

    /// <summary>Predicts for <paramref name="x"/> at <paramref name="timesteps"/>, unconditionally (a conditional network uses its null condition).</summary>
    public sealed override Tensor forward(Tensor x, Tensor timesteps) => Forward(x, timesteps, null);

    /// <summary>
    /// Predicts the noise (or v, or x₀) in <paramref name="x"/> (N, C, H, W) at integer <paramref name="timesteps"/> (N)
    /// given <paramref name="condition"/>. A conditional network given no condition, or rows marked as dropped,
    /// uses its null condition there; an unconditional network given a condition throws.
    /// </summary>
    public abstract Tensor Forward(Tensor x, Tensor timesteps, ConditionBatch? condition);
}
