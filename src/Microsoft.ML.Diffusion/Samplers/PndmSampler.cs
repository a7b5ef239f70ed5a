using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// PLMS, the pseudo linear multistep method of PNDM (Liu et al. 2022) without its Runge–Kutta warm-up: diffusers'
/// PNDMScheduler with <c>skip_prk_steps</c>, Stable Diffusion 1.x's scheduler. Each step moves x_t to x_{t−T/N} by the
/// transfer φ (a DDIM step) with ε combined from the last model outputs by the Adams–Bashforth weights (1; 3, −1; 23, −16, 5;
/// 55, −59, 37, −9). Its warm-up, as diffusers': the first step goes down with the first ε, the second evaluates there and
/// redoes the first step with the mean of both ε. So N steps list N + 1 timesteps, the second twice. ε or v prediction;
/// PLMS works on ε, so it neither clips nor thresholds x̂₀. Deterministic.
/// </summary>
internal sealed class PndmSampler : DiffusionSamplerBase
{
    private readonly List<Tensor> _outputs = [];   // the model outputs the multistep formula combines, newest last
    private Tensor? _firstSample;
    private int _counter, _inferenceSteps;

    /// <summary>Creates the sampler; call <see cref="DiffusionSamplerBase.SetTimesteps"/> before stepping.</summary>
    public PndmSampler(NoiseSchedule schedule, SamplerOptions? options = null) : base(schedule, options)
    {
        if (Options.Prediction == PredictionType.Sample)
            throw new ArgumentException("The pndm sampler combines ε (or v) predictions; a model predicting x₀ needs another sampler.", nameof(options));
    }

    /// <inheritdoc/>
    public override string Name => DiffusionSamplers.Pndm;

    /// <inheritdoc/>
    public override bool IsStochastic => false;

    /// <inheritdoc/>
    protected override IReadOnlyList<TimestepSpacing> SupportedSpacings => [TimestepSpacing.Leading, TimestepSpacing.Trailing, TimestepSpacing.Linspace];

    /// <inheritdoc/>
    protected override double[] ChooseTimesteps(int inferenceSteps)
    {
        _inferenceSteps = inferenceSteps;
        var t = SpacedTimesteps(inferenceSteps);
        return inferenceSteps == 1 ? [t[0]] : [t[0], t[1], .. t.Skip(1).Select(s => (double)s)];
    }

    /// <inheritdoc/>
    public override SamplerStepOutput Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        int t = TimestepAt(stepIndex);   // validates stepIndex
        // diffusers steps down by T/N (integer division) whatever the spacing.
        int stride = Schedule.Length / _inferenceSteps, prev = t - stride;
        using var scope = NewDisposeScope();

        var x = sample;
        if (_counter != 1)
        {
            if (_outputs.Count > 3)
            {
                _outputs[0].Dispose();
                _outputs.RemoveAt(0);
            }
            _outputs.Add(modelOutput.detach().DetachFromDisposeScope());
        }
        else
        {
            // The second evaluation redoes the first step, from the first sample.
            (prev, t) = (t, t + stride);
        }

        Tensor combined;
        if (_outputs.Count == 1 && _counter == 0)
        {
            combined = modelOutput.alias();
            _firstSample = sample.detach().DetachFromDisposeScope();
        }
        else if (_outputs.Count == 1 && _counter == 1)
        {
            combined = (modelOutput + _outputs[^1]) / 2;
            x = _firstSample ?? throw new InvalidOperationException("PNDM's steps must be taken in order from index 0.");
        }
        else if (_outputs.Count == 2)
            combined = (3 * _outputs[^1] - _outputs[^2]) / 2;
        else if (_outputs.Count == 3)
            combined = (23 * _outputs[^1] - 16 * _outputs[^2] + 5 * _outputs[^3]) / 12;
        else
            combined = (55 * _outputs[^1] - 59 * _outputs[^2] + 37 * _outputs[^3] - 9 * _outputs[^4]) / 24;

        double alphaCumprod = Schedule.AlphasCumprod[t];
        // Past the last step: ᾱ = 1, or ᾱ_0 without SetAlphaToOne.
        double alphaCumprodPrev = prev >= 0 ? Schedule.AlphasCumprod[prev] : Options.SetAlphaToOne ? 1.0 : Schedule.AlphasCumprod[0];
        var eps = Options.Prediction == PredictionType.VPrediction
            ? Math.Sqrt(alphaCumprod) * combined + Math.Sqrt(1 - alphaCumprod) * x
            : combined;

        // φ(x_t, ε, t, t_prev) (PNDM eq. 11) = √(ᾱ_prev/ᾱ_t) x_t − (ᾱ_prev − ᾱ_t) ε / (ᾱ_t √(1 − ᾱ_prev) + √(ᾱ_t (1 − ᾱ_t) ᾱ_prev)).
        double denominator = alphaCumprod * Math.Sqrt(1 - alphaCumprodPrev) + Math.Sqrt(alphaCumprod * (1 - alphaCumprod) * alphaCumprodPrev);
        var previous = Math.Sqrt(alphaCumprodPrev / alphaCumprod) * x - (alphaCumprodPrev - alphaCumprod) / denominator * eps;
        var x0 = (x - Math.Sqrt(1 - alphaCumprod) * eps) / Math.Sqrt(alphaCumprod);
        if (_counter == 1)
        {
            _firstSample?.Dispose();
            _firstSample = null;
        }
        _counter++;
        return Output(previous, x0);
    }

    /// <inheritdoc/>
    protected override void ResetHistory()
    {
        foreach (var output in _outputs) output.Dispose();
        _outputs.Clear();
        _firstSample?.Dispose();
        _firstSample = null;
        _counter = 0;
    }
}
