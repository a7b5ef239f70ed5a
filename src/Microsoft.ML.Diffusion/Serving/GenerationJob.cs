using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Serving;

/// <summary>
/// One request inside the service: its own sampler (so multistep history is per request and a row can leave the batch
/// between steps), its own noise generator, its current sample, and the task its caller awaits.
/// </summary>
internal sealed class GenerationJob : IDisposable
{
    private readonly IProgress<GenerationProgress>? _progress;
    private IDiffusionSampler? _sampler;
    private NoiseSource? _noise;

    public GenerationJob(GenerationRequest request, GenerationOptions options, BatchKey key, ConditionBatch? condition, IProgress<GenerationProgress>? progress)
        => (Request, Options, Key, Condition, _progress) = (request, options, key, condition, progress);

    public GenerationRequest Request { get; }

    public GenerationOptions Options { get; }

    public BatchKey Key { get; }

    /// <summary>The request's condition (a copy the job owns): the class or vector, or a prompt model's prompt states once started.</summary>
    public ConditionBatch? Condition { get; private set; }

    /// <summary>A prompt model's negative prompt states when guided.</summary>
    public ConditionBatch? Negative { get; private set; }

    public TaskCompletionSource<GeneratedImage> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CancellationTokenRegistration Registration { get; set; }

    /// <summary>When the request was queued (the batch window counts from the oldest request).</summary>
    public long QueuedAt { get; } = Environment.TickCount64;

    /// <summary>The node in the service's queue while the job waits there.</summary>
    public LinkedListNode<GenerationJob>? Node { get; set; }

    /// <summary>The current sample x (1, C, h, w), owned by the job.</summary>
    public Tensor? Sample { get; private set; }

    public int StepIndex { get; private set; }

    public int TotalSteps => _sampler!.Timesteps.Count;

    public double Timestep => _sampler!.Timesteps[StepIndex];

    public bool Finished => StepIndex == TotalSteps;

    /// <summary>Whether the caller no longer waits (cancelled or failed): the job leaves the batch.</summary>
    public bool Abandoned => Completion.Task.IsCompleted;

    /// <summary>Builds the sampler, the starting noise and a prompt model's prompt states; runs on the worker.</summary>
    public void Start(DiffusionModel model)
    {
        using var scope = NewDisposeScope();
        var samplerOptions = model.IsLatent ? Options with { SamplerOptions = Options.SamplerOptions with { Clipping = X0Clipping.None } } : Options;
        _sampler = SamplerFactory.Create(model, samplerOptions);
        _sampler.SetTimesteps(Key.Steps);
        _noise = NoiseSource.PerSample([Request.Seed]);
        long[] shape = model.IsLatent
            ? [1, model.NetworkOptions.ImageChannels, Key.Height / model.Autoencoder!.Config.DownscaleFactor, Key.Width / model.Autoencoder.Config.DownscaleFactor]
            : [1, .. model.ImageShape];
        var z = _noise.Next(shape, model.Device);
        double scale = _sampler.InitialNoiseScale;
        Sample = (scale == 1.0 ? z : z * scale).DetachFromDisposeScope();
        if (model.Prompts is { } encoder)
        {
            // Each prompt is encoded alone, so its states do not depend on which requests share its batch.
            Condition = ConditionBatch.PromptStates(encoder.Encode([Request.Prompt ?? ""], model.Device));
            if (Key.Guidance != 1.0) Negative = ConditionBatch.PromptStates(encoder.Encode([Request.NegativePrompt ?? ""], model.Device));
        }
        else if (Condition is { } condition && condition.Values.device != model.Device)
        {
            Condition = condition.To(model.Device);
            condition.Dispose();
        }
    }

    /// <summary>One sampler step with the network's (guided) output for this job's row, then progress.</summary>
    public void Step(Tensor modelOutput)
    {
        var noise = _sampler!.IsStochastic ? _noise!.Next(Sample!.shape, Sample.device) : null;
        using var step = _sampler.Step(modelOutput, StepIndex, Sample!, noise);
        var next = step.PreviousSample.alias().DetachFromDisposeScope();
        Sample!.Dispose();
        Sample = next;
        StepIndex++;
        _progress?.Report(new GenerationProgress(StepIndex, TotalSteps));
    }

    /// <summary>The finished image, clamped to [−1, 1] (a latent model's decoded).</summary>
    public GeneratedImage Result(DiffusionModel model)
    {
        using var scope = NewDisposeScope();
        var image = model.IsLatent ? TextToImagePipeline.Decode(model, Sample!) : Sample!.clamp(-1.0, 1.0);
        var shape = image.shape;
        return new GeneratedImage(Request.Seed, (int)shape[1], (int)shape[2], (int)shape[3], image.cpu().data<float>().ToArray());
    }

    public void Dispose()
    {
        Registration.Dispose();
        Sample?.Dispose();
        _sampler?.Dispose();
        _noise?.Dispose();
        Condition?.Dispose();
        Negative?.Dispose();
        (Sample, _sampler, _noise, Condition, Negative) = (null, null, null, null, null);
    }
}
