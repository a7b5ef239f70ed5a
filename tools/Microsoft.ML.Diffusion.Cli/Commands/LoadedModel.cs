using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>A model zip loaded with ML.NET and the diffusion model found inside it.</summary>
internal sealed class LoadedModel : IDisposable
{
    private LoadedModel(string path, ITransformer transformer, DataViewSchema inputSchema, DiffusionModel model, GenerationOptions? scheduler = null)
    {
        Path = path;
        Transformer = transformer;
        InputSchema = inputSchema;
        Model = model;
        Scheduler = scheduler;
    }

    /// <summary>
    /// The sampler settings to use unless --sampler names another sampler: a diffusers folder's scheduler, or the
    /// generation stage of a zip that has one.
    /// </summary>
    public GenerationOptions? Scheduler { get; }

    public string Path { get; }
    public ITransformer Transformer { get; }
    public DataViewSchema InputSchema { get; }
    public DiffusionModel Model { get; }

    /// <summary>The stages of the loaded pipeline, by type name.</summary>
    public IEnumerable<string> Stages => Transformer is IEnumerable<ITransformer> chain ? chain.Select(t => t.GetType().Name) : [Transformer.GetType().Name];

    /// <summary>The image column the model was trained on, when the zip holds the training stage.</summary>
    public string? ImageColumnName => (Transformer is IEnumerable<ITransformer> chain ? chain : [Transformer]).OfType<DiffusionTrainingTransformer>().FirstOrDefault()?.ImageColumnName;

    /// <summary>Loads <paramref name="path"/>; a missing file is a usage error, anything else that fails names the file and the innermost cause.</summary>
    public static LoadedModel Load(MLContext ml, string path)
    {
        if (Directory.Exists(path)) throw new UsageException($"Model '{path}' is a folder; give the model zip written by 'mldiffusion train'.");
        if (!File.Exists(path)) throw new UsageException($"Model file '{path}' does not exist.");
        ITransformer transformer;
        DataViewSchema schema;
        try
        {
            transformer = ml.Model.Load(path, out schema);
        }
        catch (Exception e) when (!Errors.IsCancellation(e) && e is not OutOfMemoryException)
        {
            // A zip can be a sound diffusion model that names a network or sampler registered by code this process lacks.
            if (e.GetBaseException() is Diffusion.Networks.UnknownNoisePredictorException or Diffusion.Samplers.UnknownSamplerException)
                throw new CliRuntimeException($"'{path}' needs a component that is not registered in this process: {e.GetBaseException().Message}", e);
            throw new CliRuntimeException($"'{path}' is not a diffusion model zip: {Errors.Innermost(e)}", e);
        }
        DiffusionModel model;
        try
        {
            model = DiffusionTrainingTransformer.FindModel(transformer);
        }
        catch (ArgumentException)
        {
            string stages = transformer is IEnumerable<ITransformer> chain ? string.Join(", ", chain.Select(t => t.GetType().Name)) : transformer.GetType().Name;
            (transformer as IDisposable)?.Dispose();
            throw new CliRuntimeException($"'{path}' is an ML.NET model zip but holds no trained diffusion model (its stages: {(stages.Length == 0 ? "none" : stages)}). Train one with 'mldiffusion train'.");
        }
        // A zip whose last diffusion stage is a generator (as 'import' writes) samples with that stage's settings by default.
        var generator = (transformer is IEnumerable<ITransformer> all ? all : [transformer]).OfType<DiffusionGenerationTransformer>().LastOrDefault();
        return new LoadedModel(path, transformer, schema, model, generator?.Options.Generation);
    }

    /// <summary>
    /// Loads a Hugging Face diffusers model folder (UNet2DModel + scheduler) and wraps it in a DiffusionGenerate stage, so it
    /// generates and saves like a model zip. Missing or unsupported files name the file and the field or tensor.
    /// </summary>
    public static LoadedModel FromDiffusers(MLContext ml, string folder)
    {
        if (File.Exists(folder)) throw new UsageException($"'{folder}' is a file; give the diffusers model folder (with config.json or unet/).");
        if (!Directory.Exists(folder)) throw new UsageException($"Diffusers folder '{folder}' does not exist.");
        DiffusionModel model;
        GenerationOptions scheduler;
        try
        {
            model = DiffusersFormat.Load(folder);   // first: it names every file the folder lacks
            try
            {
                scheduler = GenerationOptions.FromDiffusers(folder);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is Checkpoints.CheckpointFormatException or FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            throw new CliRuntimeException(e.Message, e);
        }
        var seeds = ml.Data.LoadFromEnumerable(Array.Empty<SeedRow>());
        var stage = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated",
            SeedColumnName = nameof(SeedRow.Seed),
            OutputKind = GeneratedOutputKind.Pixels,
            Generation = scheduler with { },
        }).Fit(seeds);
        return new LoadedModel(folder, stage, seeds.Schema, model, scheduler);
    }

    /// <summary>
    /// The sampling settings to use: the folder's scheduler or the zip's generation stage unless another sampler is asked
    /// for, DPM-Solver++ otherwise; then the steps and η.
    /// </summary>
    public GenerationOptions Sampling(SamplerName? sampler, int? steps, double eta)
    {
        var chosen = Scheduler is not null && (sampler is null || sampler == Scheduler.Sampler)
            ? Scheduler with { }
            : new GenerationOptions { Sampler = sampler ?? SamplerName.DpmSolverPlusPlus };
        chosen.Steps = steps;
        chosen.SamplerOptions = chosen.SamplerOptions with { Eta = eta };
        return chosen;
    }

    /// <summary>
    /// Generates <paramref name="count"/> images through the ML.NET DiffusionGenerate stage, seeds
    /// <paramref name="seed"/> … seed + count − 1, as planar C×H×W pixels in [0, 255].
    /// </summary>
    public float[][] Generate(MLContext ml, CliContext ctx, int count, long seed, SamplerName? sampler, int? steps, double eta, int batchSize)
    {
        var seeds = ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => new SeedRow { Seed = seed + i }).ToList());
        var sampling = Sampling(sampler, steps, eta);
        var options = new DiffusionGenerationOptions
        {
            OutputColumnName = "Generated",
            SeedColumnName = nameof(SeedRow.Seed),
            OutputKind = GeneratedOutputKind.Pixels,
            BatchSize = batchSize,
            Generation = sampling,
        };
        var view = ml.Transforms.DiffusionGenerate(Transformer, options).Fit(seeds).Transform(seeds);
        int stepCount = steps ?? DiffusionSamplers.DefaultSteps(sampling.Sampler, Model.Schedule);
        return ReadWithProgress(ctx, view, "Generated", count, $"Generating {count} images ({Names.Of(sampling.Sampler)}, {stepCount} steps, batches of {batchSize})");
    }

    /// <summary>
    /// Reads <paramref name="count"/> rows of a pixel column with a progress bar: the first row of each batch runs the
    /// sampler for the whole batch.
    /// </summary>
    public static float[][] ReadWithProgress(CliContext ctx, IDataView view, string column, int count, string title)
    {
        var meter = new RateMeter();
        return ctx.WithProgress(title, count, report =>
        {
            var images = new List<float[]>(count);
            using var cursor = view.GetRowCursor([view.Schema[column]]);
            var getter = cursor.GetGetter<VBuffer<float>>(view.Schema[column]);
            VBuffer<float> buffer = default;
            meter.Report(0);
            report(0, $"image 0/{count}");
            while (cursor.MoveNext())
            {
                getter(ref buffer);
                images.Add(buffer.DenseValues().ToArray());
                meter.Report(images.Count);
                report(images.Count, FormattableString.Invariant($"image {images.Count}/{count}  {meter.PerSecond:F2} images/s  ETA {meter.Eta(count - images.Count)}"));
            }
            return images.ToArray();
        });
    }

    /// <summary>A strip of <paramref name="count"/> images from seed <paramref name="seedA"/>'s to <paramref name="seedB"/>'s, as planar pixels in [0, 255].</summary>
    public float[][] Interpolate(CliContext ctx, long seedA, long seedB, int count, SamplerName? sampler, int? steps, double eta)
    {
        var options = Sampling(sampler, steps, eta);
        int stepCount = steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, Model.Schedule);
        return ctx.WithProgress($"Interpolating {count} images from seed {seedA} to {seedB} ({Names.Of(options.Sampler)}, {stepCount} steps)", stepCount, report =>
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            var strip = Model.Interpolate(options, seedA, seedB, count, (done, total) => report(done, $"step {done}/{total}"), ctx.Cancellation);
            var all = ((strip.cpu() + 1) * 127.5f).clamp(0, 255).data<float>().ToArray();
            int length = all.Length / count;
            return Enumerable.Range(0, count).Select(i => all.AsSpan(i * length, length).ToArray()).ToArray();
        });
    }

    public void Dispose()
    {
        if (Transformer is IDisposable d) d.Dispose();
        else Model.Dispose();
    }

    private sealed class SeedRow
    {
        public long Seed { get; set; }
    }
}

/// <summary>Samplers on the command line: their registered names (<see cref="SamplerName"/>), as model zips store them.</summary>
internal static class Names
{
    public static string[] Samplers => [.. DiffusionSamplers.Names];

    public static SamplerName Sampler(string name)
    {
        var resolved = new SamplerName(name);
        return DiffusionSamplers.IsRegistered(resolved) ? resolved
            : throw new UsageException($"Unknown sampler '{name}'; use one of {string.Join(", ", Samplers)}.");
    }

    public static string Of(SamplerName name)
        => name == SamplerName.Ddpm ? "DDPM"
        : name == SamplerName.Ddim ? "DDIM"
        : name == SamplerName.DpmSolverPlusPlus ? "DPM-Solver++(2M)"
        : name == SamplerName.EulerAncestral ? "Euler ancestral"
        : name == SamplerName.Heun ? "Heun"
        : name.Value;
}
