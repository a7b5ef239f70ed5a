using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// One reverse-process sampler, in diffusers' shape: choose the timesteps, then step from the current sample to
/// the next (less noisy) one once per timestep, feeding it the noise predictor's output there. Implement it (most
/// easily by deriving from <see cref="DiffusionSamplerBase"/>) and register a factory with <see cref="DiffusionSamplers"/>.
/// </summary>
public interface IDiffusionSampler : IDisposable
{
    /// <summary>The name the sampler is registered under.</summary>
    string Name { get; }

    /// <summary>The training schedule the sampler walks back along.</summary>
    NoiseSchedule Schedule { get; }

    /// <summary>The sampler's configuration.</summary>
    SamplerOptions Options { get; }

    /// <summary>Whether <see cref="Step"/> adds fresh noise (and so needs noise from the caller).</summary>
    bool IsStochastic { get; }

    /// <summary>
    /// The timesteps at which the network is evaluated, noisiest first, one per call of <see cref="Step"/>; set by
    /// <see cref="SetTimesteps"/>. Whole numbers for samplers on the schedule's steps; fractional for noise levels
    /// between them (Karras levels; the σ samplers' linspace spacing). A timestep may repeat (Heun evaluates twice at most noise
    /// levels, PNDM twice at its second).
    /// </summary>
    IReadOnlyList<double> Timesteps { get; }

    /// <summary>
    /// What the standard normal noise a run starts from is multiplied by to give the sample at <c>Timesteps[0]</c> (in the
    /// schedule's scale, x = √ᾱ x₀ + √(1 − ᾱ) ε, which is also the network's input); valid after <see cref="SetTimesteps"/>.
    /// 1 for most samplers; diffusers' Euler-family schedulers with linspace or trailing spacing start at √(1 − ᾱ) of the
    /// first timestep instead (their <c>init_noise_sigma</c> of σ_max).
    /// </summary>
    double InitialNoiseScale => 1.0;

    /// <summary>
    /// Entries of <see cref="Timesteps"/> per denoising step (diffusers' <c>scheduler.order</c>): 2 for Heun's pairs, 1
    /// otherwise (PNDM's one extra warm-up evaluation does not count). Image-to-image starts at step k's first entry.
    /// </summary>
    int Order => 1;

    /// <summary>Chooses the timesteps for <paramref name="inferenceSteps"/> steps and resets any multistep history.</summary>
    void SetTimesteps(int inferenceSteps);

    /// <summary>
    /// One step from <paramref name="sample"/> (x at <c>Timesteps[stepIndex]</c>) to the next sample. Steps must be
    /// taken in order, starting at index 0 after <see cref="SetTimesteps"/>. The caller owns the output.
    /// </summary>
    /// <param name="modelOutput">The noise predictor's output for <paramref name="sample"/> at this timestep.</param>
    /// <param name="stepIndex">Index into <see cref="Timesteps"/>.</param>
    /// <param name="sample">The current sample x_t.</param>
    /// <param name="noise">The fresh standard normal noise a stochastic sampler adds at this step.</param>
    SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null);
}
