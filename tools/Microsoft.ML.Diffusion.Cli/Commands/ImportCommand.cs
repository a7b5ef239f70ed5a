using System.CommandLine;
using Microsoft.ML.Diffusion.Cli.Output;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// <c>mldiffusion import</c>: reads a Hugging Face diffusers model folder (UNet2DModel + scheduler) and saves it as an
/// ML.NET model zip holding a DiffusionGenerate stage with the folder's scheduler settings, which 'generate', 'info'
/// and any ML.NET pipeline load.
/// </summary>
internal sealed class ImportCommand
{
    private readonly Option<string> _diffusers = new("--diffusers") { Description = "The diffusers model folder (config.json + diffusion_pytorch_model.safetensors/.bin + scheduler_config.json, or unet/ and scheduler/).", Required = true };
    private readonly Option<string> _out = new("--out") { Description = "The ML.NET model zip to write.", Required = true };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new ImportCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("import", "Import a Hugging Face diffusers model folder as an ML.NET model zip.") { _diffusers, _out };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        string outPath = parse.GetValue(_out)!;
        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath)) throw new UsageException($"--out must name a file, not '{outPath}'.");
        var ml = new MLContext(seed: 0);
        using var loaded = LoadedModel.FromDiffusers(ml, parse.GetValue(_diffusers)!);
        var shape = loaded.Model.ImageShape;
        var scheduler = loaded.Scheduler!;
        ctx.Line($"diffusers folder '{loaded.Path}': UNet2DModel of {shape[0]}×{shape[1]}×{shape[2]} images ({loaded.Model.Network.parameters().Sum(p => p.numel()):N0} parameters), " +
                 $"{loaded.Model.ScheduleOptions.Kind} schedule of {loaded.Model.ScheduleOptions.TrainSteps} steps, {loaded.Model.Prediction} prediction, sampler {Names.Of(scheduler.Sampler)}.");
        if (Path.GetDirectoryName(Path.GetFullPath(outPath)) is { } dir) Directory.CreateDirectory(dir);
        ml.Model.SaveAtomically(loaded.Transformer, loaded.InputSchema, outPath);
        ctx.Line($"Saved the model zip to '{outPath}'.");
        return ExitCodes.Success;
    }
}
