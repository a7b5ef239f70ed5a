using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks;
using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Diffusion.Cli.Output;
using Microsoft.ML.Diffusion.Schedules;
using Spectre.Console;

namespace Microsoft.ML.Diffusion.Cli.Commands;

/// <summary><c>mldiffusion info</c>: what a model zip holds.</summary>
internal sealed class InfoCommand
{
    private readonly Option<string> _model = new("--model") { Description = "The model zip written by 'mldiffusion train'.", Required = true };

    public static System.CommandLine.Command Create(Func<Func<int>, int> guard, CliContext ctx) => new InfoCommand().Build(guard, ctx);

    private System.CommandLine.Command Build(Func<Func<int>, int> guard, CliContext ctx)
    {
        var command = new System.CommandLine.Command("info", "Print a model zip's architecture, noise schedule, prediction type, training steps and parameter count.") { _model };
        command.SetAction(parse => guard(() => Run(parse, ctx)));
        return command;
    }

    private int Run(ParseResult parse, CliContext ctx)
    {
        var ml = new MLContext(seed: 0);
        using var loaded = LoadedModel.Load(ml, parse.GetValue(_model)!);
        var model = loaded.Model;
        var net = model.NetworkOptions;
        var schedule = model.ScheduleOptions;
        long parameters = model.Network.parameters().Sum(p => p.numel());
        var inv = CultureInfo.InvariantCulture;

        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(Path.GetFileName(loaded.Path)));
        table.AddColumn("Property");
        table.AddColumn("Value");
        void Row(string name, string value) => table.AddRow(Markup.Escape(name), Markup.Escape(value));

        Row("Pipeline stages", string.Join(" → ", loaded.Stages));
        Row("Input columns", string.Join(", ", loaded.InputSchema.Where(c => !c.IsHidden).Select(c => $"{c.Name} ({c.Type})")));
        if (loaded.ImageColumnName is { } column) Row("Trained on column", column);
        Row("Image shape (C×H×W)", $"{net.ImageChannels}×{net.ImageSize}×{net.ImageSize}");
        Row("Noise predictor", NoisePredictors.NameOf(net.GetType()));
        // Every setting of the network's configuration, whatever kind it is, as its model file stores it.
        using var settings = System.Text.Json.JsonDocument.Parse(net.ToJson());
        foreach (var setting in settings.RootElement.EnumerateObject())
        {
            if (setting.Name is nameof(net.ImageChannels) or nameof(net.ImageSize) or nameof(net.Condition)) continue;
            Row(setting.Name, setting.Value.ValueKind == System.Text.Json.JsonValueKind.Array
                ? string.Join(",", setting.Value.EnumerateArray().Select(v => v.ToString())) : setting.Value.ToString());
        }
        Row("Noise schedule", schedule.Kind switch
        {
            NoiseScheduleKind.Cosine => string.Create(inv, $"Cosine (offset {schedule.CosineOffset}, max β {schedule.MaxBeta})"),
            _ => string.Create(inv, $"{schedule.Kind} (β {schedule.BetaStart} → {schedule.BetaEnd})"),
        } + (schedule.ZeroTerminalSnr ? ", rescaled to zero terminal SNR" : ""));
        Row("Diffusion steps T", schedule.TrainSteps.ToString(inv));
        Row("Prediction type", model.Prediction.ToString());
        Row("Training steps", model.TrainingSteps.ToString(inv));
        Row("Parameters", parameters.ToString("N0", inv));
        Row("Device", model.Device.ToString());
        ctx.Console.Write(table);
        return ExitCodes.Success;
    }
}
