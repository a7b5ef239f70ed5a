using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The reverse process (p_sample_loop): start from noise, ask the denoiser at each of the sampler's
/// timesteps, let the sampler step. Runs without autograd and with a dispose scope per step, so memory
/// stays flat however many steps are taken.
/// </summary>
internal static class SamplingLoop
{
    /// <summary>Runs the sampler from <paramref name="initialNoise"/> to a clean sample.</summary>
    /// <param name="denoiser">The noise predictor.</param>
    /// <param name="sampler">The sampler, used with <paramref name="steps"/> steps.</param>
    /// <param name="initialNoise">
    /// Standard normal noise (N, C, H, W), left untouched; the run starts from it times the sampler's <see cref="IDiffusionSampler.InitialNoiseScale"/>.
    /// </param>
    /// <param name="steps">Number of denoising steps (a sampler may evaluate the network more often, e.g. Heun).</param>
    /// <param name="noiseSource">Source of the noise stochastic samplers add at each step (required for them).</param>
    /// <param name="onStep">Called after each network evaluation with (evaluations done, total).</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <param name="startIndex">
    /// Index into the sampler's timesteps to start at, for starting mid-trajectory (image-to-image): <paramref name="initialNoise"/>
    /// is then x at <c>Timesteps[startIndex]</c>, taken as it is. 0 starts from pure noise.
    /// </param>
    /// <returns>The generated samples, owned by the caller.</returns>
    public static Tensor Run(Denoiser denoiser, IDiffusionSampler sampler, Tensor initialNoise, int steps,
        NoiseSource? noiseSource = null, Action<int, int>? onStep = null, CancellationToken cancellationToken = default, int startIndex = 0)
    {
        ArgumentNullException.ThrowIfNull(denoiser);
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(initialNoise);
        if (sampler.IsStochastic && noiseSource is null)
            throw new ArgumentException($"The {sampler.Name} sampler adds noise at each step; pass a noise source.", nameof(noiseSource));
        sampler.SetTimesteps(steps);
        if (startIndex < 0 || startIndex >= sampler.Timesteps.Count)
            throw new ArgumentOutOfRangeException(nameof(startIndex), startIndex, $"The start index must lie in [0, {sampler.Timesteps.Count}) (the sampler's timesteps).");
        using var inference = inference_mode();
        double scale = startIndex == 0 ? sampler.InitialNoiseScale : 1.0;
        var x = (scale == 1.0 ? initialNoise.clone() : initialNoise * scale).DetachFromDisposeScope();
        try
        {
            var timesteps = sampler.Timesteps;
            // Whole timesteps go to the network as integers, as in training; fractional ones (Karras levels, σ linspace) as floats, as diffusers passes them.
            bool whole = timesteps.All(t => t == Math.Floor(t));
            for (int i = startIndex; i < timesteps.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var t = whole ? full(x.shape[0], (long)timesteps[i], dtype: int64, device: x.device) : full(x.shape[0], timesteps[i], dtype: float32, device: x.device);
                var output = denoiser(x, t);
                var noise = sampler.IsStochastic ? noiseSource!.Next(x.shape, x.device) : null;
                using var step = sampler.Step(output, i, x, noise);
                var next = step.PreviousSample.alias().DetachFromDisposeScope();
                x.Dispose();
                x = next;
                onStep?.Invoke(i + 1 - startIndex, timesteps.Count - startIndex);
            }
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }
}
