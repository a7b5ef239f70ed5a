using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Models;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// The model <c>train --from</c> names: a pixel-space model zip or diffusers folder (loaded as <c>generate</c> loads
/// them), or a Stable Diffusion folder or single file, whose UNet a LoRA trains on with captions.
/// </summary>
internal sealed class TrainingStart : IDisposable
{
    private readonly IDisposable _owner;

    private TrainingStart(string path, DiffusionModel model, IDisposable owner)
    {
        Path = path;
        Model = model;
        _owner = owner;
    }

    public string Path { get; }
    public DiffusionModel Model { get; }

    /// <summary>Whether the model reads captions through its own text encoder (Stable Diffusion).</summary>
    public bool TakesCaptions => Model.TakesPrompts;

    /// <summary>The model's condition, for a pixel-space model: None, Class, Vector or Text.</summary>
    public ConditionKind Condition => Model.NetworkOptions.Condition.Kind;

    /// <summary>Loads <paramref name="from"/>; a single Stable Diffusion file needs <paramref name="tokenizer"/>.</summary>
    public static TrainingStart Load(string from, string? tokenizer)
    {
        if (TextToImageRun.IsStableDiffusion(from))
        {
            if (File.Exists(from) && tokenizer is null)
                throw new UsageException($"'{from}' is a single checkpoint file, which holds no tokenizer: add --tokenizer <the tokenizer/ folder of a diffusers Stable Diffusion model of the same version>.");
            var sd = StableDiffusionFormat.Load(from, tokenizerFolder: tokenizer);
            return new TrainingStart(from, sd, sd);
        }
        if (tokenizer is not null) throw new UsageException($"--tokenizer is for Stable Diffusion single files; '{from}' is a pixel-space model.");
        var loaded = Directory.Exists(from) ? LoadedModel.FromDiffusers(new MLContext(seed: 0), from) : LoadedModel.Load(new MLContext(seed: 0), from);
        return new TrainingStart(from, loaded.Model, loaded);
    }

    /// <summary>What the model is, for the run's first lines.</summary>
    public string Description => TakesCaptions
        ? $"Stable Diffusion model '{Path}' ({Model.ImageShape[2]}×{Model.ImageShape[1]} by default)"
        : $"'{Path}' ({Networks.NoisePredictors.NameOf(Model.NetworkOptions.GetType())}, {Model.ImageShape[0]}×{Model.ImageShape[1]}×{Model.ImageShape[2]})";

    public void Dispose() => _owner.Dispose();
}
