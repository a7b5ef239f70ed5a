using System.Diagnostics;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Testing;

/// <summary>
/// The probe's save-loop mode: saves a model zip (<c>SaveAtomically</c>), a checkpoint (<c>DiffusionModel.Save</c>) and a
/// training state (<c>DiffusionTrainer.SaveState</c>) to the same three paths over and over, each round v = 1, 2, … with
/// every weight equal to its seeded initial value + v, and prints "&lt;file&gt; &lt;v&gt;" after each save. The kill -9
/// tests stop it mid-save and check that each file loads as one whole save. Also compiled into the test project, which
/// builds the same trainer to know the initial weights.
/// </summary>
internal static class SaveLoop
{
    public const string Zip = "model.zip", Checkpoint = "model.mldiff", State = "state.zip";
    public static readonly string[] Files = [Zip, Checkpoint, State];

    // Under a MB of weights: each save takes long enough to be caught mid-write, and a round is quick.
    public static DiffusionTrainer CreateTrainer() => new(
        new UNetOptions { ImageChannels = 1, ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8] },
        options: new DiffusionTrainerOptions { Seed = 7, EmaDecay = 0 }, device: CPU);

    /// <summary>Saves until <paramref name="limit"/> has passed (so a probe whose test died does not run on).</summary>
    public static int Run(string folder, TimeSpan limit)
    {
        using var trainer = CreateTrainer();
        var parameters = trainer.Network.parameters().ToArray();
        var initial = parameters.Select(p => p.detach().clone()).ToArray();
        var model = new DiffusionModel(trainer.Network, trainer.ScheduleOptions, trainer.Options.Prediction);
        var ml = new MLContext(seed: 0);
        var rows = ml.Data.LoadFromEnumerable(new[] { new Row() });
        var stage = ml.Transforms.DiffusionGenerate(model, new DiffusionGenerationOptions()).Fit(rows);
        var clock = Stopwatch.StartNew();
        for (int v = 1; clock.Elapsed < limit; v++)
        {
            using (NewDisposeScope())
            using (no_grad())
                for (int i = 0; i < parameters.Length; i++)
                    parameters[i].copy_(initial[i] + v);
            ml.Model.SaveAtomically(stage, rows.Schema, Path.Combine(folder, Zip));
            Console.WriteLine($"{Zip} {v}");
            model.Save(Path.Combine(folder, Checkpoint));
            Console.WriteLine($"{Checkpoint} {v}");
            trainer.SaveState(Path.Combine(folder, State));
            Console.WriteLine($"{State} {v}");
        }
        return 0;
    }

    /// <summary>
    /// The v of the save <paramref name="network"/> was loaded from: every weight minus its initial value in
    /// <paramref name="initial"/> (a network of <see cref="CreateTrainer"/>); null when the weights are not one save's.
    /// </summary>
    public static int? Round(NoisePredictor network, NoisePredictor initial)
    {
        using var scope = NewDisposeScope();
        var loaded = network.parameters().ToArray();
        var start = initial.parameters().ToArray();
        if (loaded.Length != start.Length) return null;
        int? round = null;
        for (int i = 0; i < loaded.Length; i++)
        {
            var difference = loaded[i].detach() - start[i].detach();
            float first = difference.flatten()[0].item<float>();
            int v = (int)MathF.Round(first);
            if (round is { } r && r != v) return null;
            round = v;
            if ((difference - v).abs().max().item<float>() > 1e-3f) return null;
        }
        return round;
    }

    private sealed class Row
    {
        public int Seed { get; set; }
    }
}
