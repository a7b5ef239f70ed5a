using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// RePaint (Lugmayr et al. 2022) as a scheduler, as diffusers' RePaintScheduler is: its walk (<see cref="RePaintTimesteps"/>)
/// goes down by DDIM(η) steps on the region to redraw while the kept region is the known image noised to the step's level,
/// and jumps back up by re-noising with the forward process, so that the two regions come to agree.
/// </summary>
internal sealed class RePaintSampler
{
    private readonly NoiseSchedule _schedule;
    private readonly PredictionType _prediction;
    private readonly double _eta;
    private readonly bool _clip;

    /// <summary>
    /// A walk of <paramref name="steps"/> denoising steps with jumps of <paramref name="jumpLength"/> steps, each stretch sampled
    /// <paramref name="resamplings"/> times. <paramref name="clip"/> clamps x̂₀ to [−1, 1] (images); latents are not clamped.
    /// </summary>
    public RePaintSampler(NoiseSchedule schedule, PredictionType prediction, int steps, int jumpLength, int resamplings, double eta, bool clip = true)
    {
        _schedule = schedule;
        _clip = clip;
        _prediction = prediction;
        _eta = eta;
        Timesteps = RePaintTimesteps.Create(schedule.Length, steps, jumpLength, resamplings);
        Ratio = schedule.Length / steps;
        DenoisingSteps = Timesteps.Where((t, i) => i == 0 || t < Timesteps[i - 1]).Count();
    }

    /// <summary>The walk: training timesteps, a step down where one is smaller than the one before, a jump up otherwise.</summary>
    public IReadOnlyList<int> Timesteps { get; }

    /// <summary>Training steps between two of the walk's levels.</summary>
    public int Ratio { get; }

    /// <summary>The walk's steps down (network evaluations).</summary>
    public int DenoisingSteps { get; }

    /// <summary>
    /// One step down from t to t − <see cref="Ratio"/>: DDIM(η) where <paramref name="redraw"/> is 1, the known image noised by
    /// q(x_{t−ratio} | x₀) where <paramref name="keep"/> (1 − redraw) is. One draw of <paramref name="noise"/> serves both.
    /// </summary>
    public Tensor Step(Tensor modelOutput, int t, Tensor sample, Tensor known, Tensor redraw, Tensor keep, NoiseSource noise)
    {
        double a = _schedule.AlphasCumprod[t], aPrev = t - Ratio >= 0 ? _schedule.AlphasCumprod[t - Ratio] : 1.0;
        var x0 = PredictionConverter.ToSample(_prediction, modelOutput, sample, a);
        var eps = PredictionConverter.ToNoise(sample, x0, a);   // from the unclipped x̂₀, as diffusers' RePaint uses the model's ε
        if (_clip) x0 = x0.clamp(-1, 1);
        double variance = (1 - aPrev) / (1 - a) * (1 - a / aPrev);
        double sigma = _eta * Math.Sqrt(Math.Max(variance, 0));
        var z = noise.Next(known.shape, known.device);
        var unknown = Math.Sqrt(aPrev) * x0 + Math.Sqrt(Math.Max(1 - aPrev - sigma * sigma, 0)) * eps;
        if (t > 0 && sigma > 0) unknown = unknown + sigma * z;
        var kept = Math.Sqrt(aPrev) * known + Math.Sqrt(1 - aPrev) * z;
        return redraw * unknown + keep * kept;
    }

    /// <summary>A jump back up from training step <paramref name="from"/> to <paramref name="to"/>: the forward process, one training step at a time.</summary>
    public Tensor UndoStep(Tensor sample, int from, int to, NoiseSource noise)
    {
        var next = sample.alias();
        for (int s = from; s < to; s++)
        {
            double beta = _schedule.Betas[s];
            next = Math.Sqrt(1 - beta) * next + Math.Sqrt(beta) * noise.Next(sample.shape, sample.device);
        }
        return next;
    }
}
