using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary><c>mldiffusion generate --model &lt;Stable Diffusion folder&gt; --prompt …</c>: text-to-image with a progress bar per step, written as a PNG grid.</summary>
internal sealed record TextToImageRun(string Model, string? Tokenizer, string Prompt, string? Negative, int? Width, int? Height, double Guidance, SamplerName? Sampler,
    int? Steps, long Seed, int Count, int Batch, IReadOnlyList<(string Path, double Scale)> Loras)
{
    /// <summary>Whether <paramref name="path"/> is a Stable Diffusion model (a diffusers StableDiffusionPipeline folder).</summary>
    public static bool IsStableDiffusion(string path)
        => StableDiffusionFormat.IsTextToImageFolder(path)
           || File.Exists(path) && Path.GetExtension(path).ToLowerInvariant() is ".safetensors" or ".ckpt";

    public int Run(CliContext ctx, string outPath, int columns, int scale)
    {
        using var model = Load(ctx);
        var options = Sampler is { } chosen ? new GenerationOptions { Sampler = chosen }
            : Directory.Exists(Model) ? GenerationOptions.FromDiffusers(Model)
            : new GenerationOptions { Sampler = SamplerName.Pndm };   // diffusers' from_single_file default
        options.Steps = Steps;
        options.GuidanceScale = Guidance;
        options.Width = Width;
        options.Height = Height;
        int steps = Steps ?? DiffusionSamplers.DefaultSteps(options.Sampler, model.Schedule);
        int height = Height ?? (int)model.ImageShape[1], width = Width ?? (int)model.ImageShape[2];
        var images = new List<float[]>();
        for (int start = 0; start < Count; start += Batch)
        {
            int n = Math.Min(Batch, Count - start);
            var seeds = Enumerable.Range(start, n).Select(i => Seed + i).ToArray();
            string title = $"Images {start + 1}–{start + n} of {Count}: {width}×{height}, {Names.Of(options.Sampler)}, {steps} steps, guidance {Guidance}";
            var batch = ctx.WithProgress(title, steps, report =>
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var pixels = model.TextToImage(options, Enumerable.Repeat(Prompt, n).ToArray(), seeds, Negative is null ? null : Enumerable.Repeat(Negative, n).ToArray(),
                    (done, total) => report(Math.Min(done, steps), $"step {done}/{total}"), ctx.Cancellation, warning => ctx.Line($"Warning: {warning}"));
                var all = ((pixels.cpu() + 1) * 127.5f).clamp(0, 255).data<float>().ToArray();
                int length = all.Length / n;
                return Enumerable.Range(0, n).Select(i => all.AsSpan(i * length, length).ToArray()).ToArray();
            });
            images.AddRange(batch);
        }
        PixelRows.SaveGrid(images, 3, height, width, outPath, Math.Min(columns, Count), scale);
        ctx.Line($"Wrote {Count} images (\"{Prompt}\", seeds {Seed}–{Seed + Count - 1}) to '{outPath}'.");
        return ExitCodes.Success;
    }

    private Models.DiffusionModel Load(CliContext ctx)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        if (File.Exists(Model) && Tokenizer is null)
            throw new UsageException($"'{Model}' is a single checkpoint file, which holds no tokenizer: add --tokenizer <the tokenizer/ folder of a diffusers Stable Diffusion model of the same version>.");
        var model = StableDiffusionFormat.Load(Model, tokenizerFolder: Tokenizer);
        foreach (var (path, scale) in Loras)
        {
            var lora = Adapters.LoraExtensions.LoadLora(model, path, scale);   // fused into the weights for this run
            ctx.Line($"LoRA '{path}' ({lora.Layout} layout) at scale {scale.ToString(System.Globalization.CultureInfo.InvariantCulture)}: {lora.UNetLayers} UNet and {lora.TextEncoderLayers} text-encoder layers.");
        }
        ctx.Line($"Stable Diffusion model '{Model}': {model.Network.parameters().Sum(p => p.numel()):N0} UNet parameters, {model.ImageShape[2]}×{model.ImageShape[1]} by default, {model.Prediction} prediction (loaded in {started.Elapsed.TotalSeconds:F1} s).");
        return model;
    }
}
