using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary><c>mldiffusion generate</c>: loads a model zip, generates through DiffusionGenerate and writes a PNG grid.</summary>
internal sealed class GenerateCommand
{
    private readonly Option<string?> _model = new("--model") { Description = "The model zip written by 'mldiffusion train' or 'import', or a Stable Diffusion 1.x/2.x diffusers folder (with --prompt)." };
    private readonly Option<string?> _prompt = new("--prompt") { Description = "Stable Diffusion: what to draw." };
    private readonly Option<string?> _negative = new("--negative") { Description = "Stable Diffusion: what to steer away from (default: nothing)." };
    private readonly Option<int?> _width = new("--width") { Description = "Stable Diffusion: image width, a multiple of 8 (default: the model's)." };
    private readonly Option<int?> _height = new("--height") { Description = "Stable Diffusion: image height, a multiple of 8 (default: the model's)." };
    private readonly Option<string?> _tokenizer = new("--tokenizer") { Description = "Stable Diffusion single files: the tokenizer/ folder of a diffusers SD model of the same version." };
    private readonly Option<string[]> _lora = new("--lora") { Description = "A LoRA file to apply (fused into the weights for this run), as path or path:scale (default scale 1); repeatable." };
    private readonly Option<double> _guidance = new("--guidance") { Description = "Stable Diffusion: classifier-free guidance scale.", DefaultValueFactory = _ => 7.5 };
    private readonly Option<string?> _diffusers = new("--diffusers") { Description = "A Hugging Face diffusers model folder (UNet2DModel + scheduler) to generate from instead of a zip." };
    private readonly Option<int> _count = new("--count") { Description = "Images to generate.", DefaultValueFactory = _ => 16 };
    private readonly Option<long> _seed = new("--seed") { Description = "Seed of the first image; image i uses seed + i.", DefaultValueFactory = _ => 0 };
    private readonly Option<string?> _sampler = new Option<string?>("--sampler") { Description = "ddpm, ddim, dpm-solver++, euler-ancestral, heun, or another registered sampler (default: dpm-solver++; a diffusers folder's own scheduler)." }
        .AcceptOnlyFromAmong(Names.Samplers);
    private readonly Option<int?> _steps = new("--steps") { Description = "Denoising steps (default: DDPM all T, DDIM 50, DPM-Solver++ 20)." };
    private readonly Option<double> _eta = new("--eta") { Description = "DDIM's η: 0 is deterministic, 1 is DDPM-like.", DefaultValueFactory = _ => 0.0 };
    private readonly Option<string> _out = new("--out") { Description = "The PNG grid to write.", Required = true };
    private readonly Option<int> _columns = new("--columns") { Description = "Images per grid row.", DefaultValueFactory = _ => 8 };
    private readonly Option<int> _scale = new("--scale") { Description = "Pixel magnification in the grid.", DefaultValueFactory = _ => 4 };
    private readonly Option<int> _batch = new("--batch") { Description = "Images per sampler run.", DefaultValueFactory = _ => 16 };
    private readonly Option<long[]?> _interpolate = new("--interpolate")
    {
        Description = "Two seeds A B: a strip of --count images moving smoothly from A's image to B's (spherical interpolation of their noise).",
        Arity = new ArgumentArity(2, 2), AllowMultipleArgumentsPerToken = true,
    };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new GenerateCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("generate", "Generate images from a model zip and write them as a PNG grid.")
        {
            _model, _diffusers, _prompt, _negative, _tokenizer, _lora, _width, _height, _guidance, _count, _seed, _sampler, _steps, _eta, _out, _columns, _scale, _batch, _interpolate,
        };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    // "path" or "path:scale"; a Windows drive letter's colon is not a scale.
    private static List<(string Path, double Scale)> Loras(string[] values)
    {
        var loras = new List<(string, double)>();
        foreach (var value in values)
        {
            int colon = value.LastIndexOf(':');
            if (colon > 1 && double.TryParse(value[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double scale))
            {
                if (!double.IsFinite(scale)) throw new UsageException($"--lora '{value}': the scale must be a finite number.");
                loras.Add((value[..colon], scale));
            }
            else loras.Add((value, 1.0));
            if (!File.Exists(loras[^1].Item1)) throw new UsageException($"--lora '{loras[^1].Item1}' does not exist.");
        }
        return loras;
    }

    // The LoRAs fused into a pixel-space model's network for this run; disposing unfuses them.
    private static CompositeDisposable FuseLoras(CliContext ctx, Models.DiffusionModel model, List<(string Path, double Scale)> loras)
    {
        var fused = new CompositeDisposable();
        try
        {
            foreach (var (path, scale) in loras)
            {
                var lora = Adapters.LoraExtensions.LoadLora(model, path, scale);
                fused.Add(lora);
                ctx.Line($"LoRA '{path}' ({lora.Layout} layout) at scale {scale.ToString(CultureInfo.InvariantCulture)}: {lora.UNetLayers} layers.");
            }
        }
        catch (Exception e)
        {
            fused.Dispose();
            if (e is Checkpoints.CheckpointFormatException) throw new CliRuntimeException(e.Message, e);
            throw;
        }
        return fused;
    }

    private sealed class CompositeDisposable : List<IDisposable>, IDisposable
    {
        public void Dispose()
        {
            // The last fused first, as they were stacked.
            for (int i = Count - 1; i >= 0; i--) this[i].Dispose();
            Clear();
        }
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        int count = parse.GetValue(_count);
        if (count is < 1 or > 100_000) throw new UsageException($"--count must be between 1 and 100000, not {count}.");
        string? zip = parse.GetValue(_model), diffusers = parse.GetValue(_diffusers);
        if ((zip is null) == (diffusers is null)) throw new UsageException(zip is null ? "Give the model: --model <zip> or --diffusers <folder>." : "Give only one of --model and --diffusers.");
        SamplerName? sampler = parse.GetValue(_sampler) is { } name ? Names.Sampler(name) : (SamplerName?)null;
        int? steps = parse.GetValue(_steps);
        if (steps is < 1) throw new UsageException($"--steps must be positive, not {steps}.");
        double eta = parse.GetValue(_eta);
        if (!(eta >= 0 && eta <= 10)) throw new UsageException($"--eta must lie between 0 and 10, not {eta.ToString(CultureInfo.InvariantCulture)}.");
        int columns = parse.GetValue(_columns);
        if (columns < 1) throw new UsageException($"--columns must be positive, not {columns}.");
        int scale = parse.GetValue(_scale);
        if (scale is < 1 or > 32) throw new UsageException($"--scale must be between 1 and 32, not {scale}.");
        int batch = parse.GetValue(_batch);
        if (batch < 1) throw new UsageException($"--batch must be positive, not {batch}.");
        string outPath = parse.GetValue(_out)!;
        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath)) throw new UsageException($"--out must name a PNG file, not '{outPath}'.");
        long seed = parse.GetValue(_seed);
        long[]? ends = parse.GetValue(_interpolate) is { Length: 2 } pair ? pair : null;
        if (ends is not null && count < 2) throw new UsageException($"--interpolate needs --count of at least 2 (the two ends), not {count}.");
        if (ends is not null && parse.GetResult(_seed) is { Implicit: false }) throw new UsageException("Give either --seed or --interpolate A B, not both.");
        if (eta > 0 && sampler is { } chosen && chosen != (SamplerName)SamplerName.Ddim) ctx.Line($"Note: --eta is used only by the ddim sampler; {Names.Of(chosen)} ignores it.");

        string? prompt = parse.GetValue(_prompt);
        string? textToImage = zip is not null && TextToImageRun.IsStableDiffusion(zip) ? zip : diffusers is not null && TextToImageRun.IsStableDiffusion(diffusers) ? diffusers : null;
        if (textToImage is null && (prompt is not null || parse.GetValue(_negative) is not null || parse.GetValue(_width) is not null || parse.GetValue(_height) is not null))
            throw new UsageException("--prompt, --negative, --width and --height need a Stable Diffusion model: --model <diffusers StableDiffusionPipeline folder, or a .safetensors/.ckpt single file with --tokenizer>.");
        if (textToImage is not null)
        {
            if (ends is not null) throw new UsageException("--interpolate is not available for Stable Diffusion models.");
            if (parse.GetValue(_width) is { } w && (w < 8 || w % 8 != 0)) throw new UsageException($"--width must be a positive multiple of 8, not {w}.");
            if (parse.GetValue(_height) is { } h && (h < 8 || h % 8 != 0)) throw new UsageException($"--height must be a positive multiple of 8, not {h}.");
            double guidance = parse.GetValue(_guidance);
            if (!(guidance >= 0 && guidance <= 100)) throw new UsageException($"--guidance must lie between 0 and 100, not {guidance.ToString(CultureInfo.InvariantCulture)}.");
            var run = new TextToImageRun(textToImage, parse.GetValue(_tokenizer), prompt ?? "", parse.GetValue(_negative), parse.GetValue(_width), parse.GetValue(_height), guidance,
                sampler, steps, seed, count, Math.Min(batch, count), Loras(parse.GetValue(_lora) ?? []));
            try
            {
                return run.Run(ctx, outPath, columns, parse.GetResult(_scale) is { Implicit: false } ? scale : 1);
            }
            catch (Exception e) when (Errors.IsCancellation(e))
            {
                ctx.Line("Generation stopped; no grid was written.");
                return ExitCodes.Cancelled;
            }
        }

        var ml = new MLContext(seed: 0);
        using var cancelRegistration = ctx.Cancellation.Register(() => ml.CancelExecution());
        var loras = Loras(parse.GetValue(_lora) ?? []);
        using var loaded = zip is not null ? LoadedModel.Load(ml, zip) : LoadedModel.FromDiffusers(ml, diffusers!);
        using var fused = FuseLoras(ctx, loaded.Model, loras);
        var shape = loaded.Model.ImageShape;
        ctx.Line($"Model '{loaded.Path}': {shape[0]}×{shape[1]}×{shape[2]} images, {loaded.Model.TrainingSteps} training steps.");
        try
        {
            var pixels = ends is null
                ? loaded.Generate(ml, ctx, count, seed, sampler, steps, eta, batch)
                : loaded.Interpolate(ctx, ends[0], ends[1], count, sampler, steps, eta);
            PixelRows.SaveGrid(pixels, (int)shape[0], (int)shape[1], (int)shape[2], outPath, columns, scale);
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            ctx.Line($"Generation stopped; no grid was written.");
            return ExitCodes.Cancelled;
        }
        int gridColumns = Math.Min(columns, count), rows = (count + gridColumns - 1) / gridColumns;
        string what = ends is null ? $"seeds {seed}–{seed + count - 1}" : $"from seed {ends[0]} to seed {ends[1]}";
        ctx.Line($"Wrote {count} images ({what}) as a {gridColumns}×{rows} grid to '{outPath}'.");
        return ExitCodes.Success;
    }
}
