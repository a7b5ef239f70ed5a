using System.IO.Compression;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.MLNet;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>train once on the built-in shapes (20 steps of a tiny UNet2DModel), then generate, info and evaluate on the result.</summary>
public sealed class TrainedModelTests(TrainedModelTests.TrainedModel trained) : IClassFixture<TrainedModelTests.TrainedModel>
{
    public sealed class TrainedModel : IDisposable
    {
        public string Folder { get; } = Directory.CreateTempSubdirectory("mldiffusion-cli-").FullName;
        public string Zip => Path.Combine(Folder, "model.zip");
        public string Checkpoint => Path.Combine(Folder, "state.zip");
        public Outcome Training { get; }

        public TrainedModel()
        {
            Training = Run(["train", "--shapes", .. TinyTraining(20), "--out", Zip, "--checkpoint", Checkpoint, "--checkpoint-every", "10"]);
        }

        public void Dispose() => Directory.Delete(Folder, recursive: true);
    }

    [Fact]
    public void TrainWritesALoadableZipTheCheckpointAndALossPlot()
    {
        Succeeded(trained.Training);
        Assert.Contains("step 20/20", trained.Training.Output);
        Assert.Matches(@"loss \d+\.\d{4}", trained.Training.Output);
        Assert.Matches(@"\d+\.\d steps/s\s+\d+ images/s\s+ETA", trained.Training.Output);

        var ml = new MLContext();
        var loaded = ml.Model.Load(trained.Zip, out var schema);
        Assert.Equal(20, DiffusionTrainingTransformer.FindModel(loaded).TrainingSteps);
        Assert.NotNull(schema.GetColumnOrNull("Pixels"));
        Assert.True(File.Exists(trained.Checkpoint));

        Assert.Equal((900, 520), PngSize(Path.Combine(trained.Folder, "model.loss.png")));
        var csv = File.ReadAllLines(Path.Combine(trained.Folder, "model.loss.csv"));
        Assert.Equal("step,loss,learning_rate", csv[0]);
        Assert.Equal(21, csv.Length);
        // The default cosine decay: the peak --lr 2e-3 at the end of the 5 warm-up steps, falling to 0 at step 20.
        var rates = csv.Skip(1).Select(l => double.Parse(l.Split(',')[2], CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(2e-3, rates[4], 12);
        Assert.All(rates.Skip(4).Zip(rates.Skip(5)), r => Assert.True(r.Second < r.First, "the rate falls after warm-up"));
        Assert.Equal(0, rates[^1], 12);
    }

    [Fact]
    public void GenerateWritesAGridOfTheExpectedSizeAndSameSeedsGiveTheSameImages()
    {
        string grid = Path.Combine(trained.Folder, "grid.png"), again = Path.Combine(trained.Folder, "grid-again.png");
        string[] args = ["generate", "--model", trained.Zip, "--count", "4", "--seed", "7", "--sampler", "ddim", "--steps", "5", "--columns", "8", "--scale", "4"];
        var first = Run([.. args, "--out", grid]);
        Succeeded(first);
        Assert.Contains("image 4/4", first.Output);
        Assert.Contains("seeds 7–10", first.Output);
        Assert.Equal(GridSize(4, columns: 8, size: 16, scale: 4), PngSize(grid));   // 4 columns of 16·4 px plus padding

        Succeeded(Run([.. args, "--out", again, "--batch", "3"]));
        Assert.Equal(File.ReadAllBytes(grid), File.ReadAllBytes(again));
    }

    [Fact]
    public void GenerateWithColumnsLaysOutRows()
    {
        string grid = Path.Combine(trained.Folder, "grid-2x2.png");
        Succeeded(Run("generate", "--model", trained.Zip, "--count", "4", "--sampler", "dpm-solver++", "--steps", "3", "--columns", "2", "--scale", "2", "--out", grid));
        Assert.Equal(GridSize(4, columns: 2, size: 16, scale: 2), PngSize(grid));
    }

    [Fact]
    public void AnArgumentErrorFromTheLibraryShowsItsMessageAndValueWithoutTheParameterName()
    {
        var outcome = Run("generate", "--model", trained.Zip, "--count", "1", "--sampler", "ddim", "--steps", "5000", "--out", Path.Combine(trained.Folder, "too-many.png"));
        Assert.True(outcome.ExitCode == 1, outcome.ToString());
        Assert.Contains("error: The step count must lie in [1, 1000] (the schedule's length). Actual value was 5000.", outcome.Output);
        Assert.DoesNotContain("(Parameter", outcome.Output);
    }

    [Fact]
    public void InfoPrintsTheArchitectureScheduleAndStepCount()
    {
        var info = Run("info", "--model", trained.Zip);
        Succeeded(info);
        Assert.Matches(@"Training steps\s*│\s*20\s", info.Output);
        Assert.Matches(@"Image shape \(C×H×W\)\s*│\s*1×16×16", info.Output);
        Assert.Matches(@"Noise predictor\s*│\s*diffusers-unet2d\s", info.Output);
        Assert.Matches(@"BlockOutChannels\s*│\s*16,32\s", info.Output);
        Assert.Matches(@"Noise schedule\s*│\s*Linear", info.Output);
        Assert.Matches(@"Prediction type\s*│\s*VPrediction", info.Output);
        var parameters = Regex.Match(info.Output, @"Parameters\s*│\s*([\d,]+)");
        Assert.True(parameters.Success, info.Output);
        Assert.True(long.Parse(parameters.Groups[1].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture) > 10_000);
    }

    [Fact]
    public void InfoAndGenerateOnAZipWhoseNetworkIsNotRegisteredNameTheMissingRegistration()
    {
        // The same zip with its network kind renamed to one no code registers (the header is outside the weights' checksum).
        string zip = Path.Combine(trained.Folder, "unregistered.zip");
        File.Copy(trained.Zip, zip, overwrite: true);
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Update))
        {
            var entry = archive.Entries.Single(e => e.FullName.EndsWith("DiffusionModel.mldiff", StringComparison.Ordinal));
            byte[] bytes;
            using (var read = entry.Open()) { using var copy = new MemoryStream(); read.CopyTo(copy); bytes = copy.ToArray(); }
            string text = System.Text.Encoding.Latin1.GetString(bytes);
            int at = text.IndexOf("\"Type\":\"diffusers-unet2d\"", StringComparison.Ordinal);
            Assert.True(at >= 0, "the checkpoint header names the diffusers-unet2d network");
            System.Text.Encoding.Latin1.GetBytes("\"Type\":\"zzzzzzzzzzzzzzzz\"").CopyTo(bytes, at);
            string name = entry.FullName;
            entry.Delete();
            using var write = archive.CreateEntry(name).Open();
            write.Write(bytes);
        }
        foreach (var args in new[] { new[] { "info", "--model", zip }, ["generate", "--model", zip, "--count", "1", "--out", Path.Combine(trained.Folder, "x.png")] })
        {
            var outcome = Run(args);
            Assert.Equal(ExitCodes.RuntimeError, outcome.ExitCode);
            Assert.Contains("not registered in this process", outcome.Output);
            Assert.Contains("'zzzzzzzzzzzzzzzz'", outcome.Output);
            Assert.DoesNotContain("is not a diffusion model zip", outcome.Output);
            Assert.DoesNotContain("target of an invocation", outcome.Output);
        }
    }

    [Fact]
    public void TrainTakesTheRecipeOptionsAndTheModelRecordsItsSchedule()
    {
        string zip = Path.Combine(trained.Folder, "recipe.zip");
        Succeeded(Run(["train", "--shapes", "--shape-count", "16", .. TinyTraining(3), "--prediction", "v", "--zero-terminal-snr", "--min-snr-gamma", "5",
            "--offset-noise", "0.1", "--lr-decay", "cosine", "--out", zip]));
        var info = Run("info", "--model", zip);
        Succeeded(info);
        Assert.Matches(@"Noise schedule\s*│\s*Linear \(β 0\.0001 → 0\.02\), rescaled to zero terminal SNR", info.Output);
        Assert.Matches(@"Prediction type\s*│\s*VPrediction", info.Output);
    }

    [Fact]
    public void EvaluatePrintsDistancesAndPixelStatistics()
    {
        var evaluation = Run("evaluate", "--model", trained.Zip, "--shapes", "--count", "8", "--sampler", "ddim", "--steps", "5");
        Succeeded(evaluation);
        double[] Numbers(string rowName)
        {
            var line = evaluation.Output.Split('\n').Single(l => l.Contains(rowName, StringComparison.Ordinal));
            return Regex.Matches(line, @"\d+\.\d+").Select(m => double.Parse(m.Value, CultureInfo.InvariantCulture)).ToArray();
        }
        var generated = Numbers("generated");
        var real = Numbers("real (each vs the rest)");
        var noise = Numbers("clipped Gaussian noise");
        Assert.All([generated, real, noise], row => Assert.Equal(3, row.Length));                  // NN RMS, mean, std
        Assert.All([generated, real, noise], row => Assert.All(row, v => Assert.InRange(v, 0, 1)));
        Assert.True(real[0] < noise[0], $"real images ({real[0]}) should be closer to each other than noise ({noise[0]}) is to them");
        Assert.Matches(@"Generated / noise distance ratio: \d+\.\d{3}", evaluation.Output);
    }
}
