using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// One reverse-process sampler, in diffusers' shape: choose the timesteps, then step from x_t to the
/// next (less noisy) sample once per timestep, feeding it the noise predictor's output at that step.
/// </summary>
public interface IDiffusionSampler : IDisposable
{
    /// <summary>The sampler's kind.</summary>
    SamplerKind Kind { get; }

    /// <summary>The training schedule the sampler walks back along.</summary>
    NoiseSchedule Schedule { get; }

    /// <summary>Whether <see cref="Step"/> adds fresh noise (and so needs a generator or explicit noise).</summary>
    bool IsStochastic { get; }

    /// <summary>The timesteps to visit, noisiest first; set by <see cref="SetTimesteps"/>.</summary>
    IReadOnlyList<int> Timesteps { get; }

    /// <summary>Chooses <paramref name="inferenceSteps"/> timesteps and resets any multistep history.</summary>
    void SetTimesteps(int inferenceSteps);

    /// <summary>
    /// One step from <paramref name="sample"/> (x at <c>Timesteps[stepIndex]</c>) to the next sample.
    /// Steps must be taken in order, starting at index 0 after <see cref="SetTimesteps"/>.
    /// </summary>
    /// <param name="modelOutput">The noise predictor's output for <paramref name="sample"/> at this step.</param>
    /// <param name="stepIndex">Index into <see cref="Timesteps"/>.</param>
    /// <param name="sample">The current sample x_t.</param>
    /// <param name="generator">Source of the step's fresh noise, where the sampler adds any.</param>
    /// <param name="noise">Explicit noise z to use instead of drawing from <paramref name="generator"/>.</param>
    Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null, Tensor? noise = null);
}
