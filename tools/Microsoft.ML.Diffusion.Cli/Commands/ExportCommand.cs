using System.CommandLine;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary>
/// <c>mldiffusion export</c>: writes the diffusion model of a model zip as a Hugging Face diffusers pipeline folder
/// (model_index.json, unet/, scheduler/) that diffusers' DDPMPipeline.from_pretrained loads. Only a UNet2DModel network
/// can be written.
/// </summary>
internal sealed class ExportCommand
{
    private readonly Option<string> _model = new("--model") { Description = "The model zip written by 'mldiffusion train' or 'import'.", Required = true };
    private readonly Option<string> _diffusers = new("--diffusers") { Description = "The folder to write the diffusers pipeline to.", Required = true };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new ExportCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("export", "Write a model zip's diffusion model as a Hugging Face diffusers folder.") { _model, _diffusers };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        string folder = parse.GetValue(_diffusers)!;
        if (string.IsNullOrWhiteSpace(folder) || File.Exists(folder)) throw new UsageException($"--diffusers must name a folder, not '{folder}'.");
        var ml = new MLContext(seed: 0);
        using var loaded = LoadedModel.Load(ml, parse.GetValue(_model)!);
        try
        {
            loaded.Model.SaveDiffusers(folder);
        }
        catch (NotSupportedException e)
        {
            throw new CliRuntimeException($"'{loaded.Path}' cannot be written as a diffusers folder: {e.Message}", e);
        }
        ctx.Line($"Wrote the diffusers pipeline (UNet2DModel + DDPMScheduler) to '{folder}'; load it in Python with DDPMPipeline.from_pretrained.");
        return ExitCodes.Success;
    }
}
