using System.IO.Compression;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>Wrong command lines exit 2, broken inputs exit 1; both name the problem, before any training.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-bad-").FullName;

    private string In(string name) => Path.Combine(_folder, name);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static void UsageError(Outcome outcome, params string[] mentions)
    {
        Assert.True(outcome.ExitCode == 2, outcome.ToString());
        foreach (string m in mentions) Assert.Contains(m, outcome.Output);
    }

    private static void RuntimeError(Outcome outcome, params string[] mentions)
    {
        Assert.True(outcome.ExitCode == 1, outcome.ToString());
        foreach (string m in mentions) Assert.Contains(m, outcome.Output);
    }

    [Fact]
    public void UsageErrorsExitWith2AndSayWhatIsWrong()
    {
        string model = In("m.zip");
        UsageError(Run(), "command");
        UsageError(Run("frobnicate"), "frobnicate");
        UsageError(Run("train", "--shapes", "--steps", "abc", "--out", model), "abc", "--steps");
        UsageError(Run("train", "--shapes", "--steps", "0", "--out", model), "--steps must be positive");
        UsageError(Run("train", "--shapes", "--lr", "-1", "--out", model), "--lr");
        UsageError(Run("train", "--out", model), "--images", "--idx", "--shapes");
        UsageError(Run("train", "--shapes", "--idx", In("x.idx"), "--out", model), "only one");
        UsageError(Run("train", "--shapes", "--channels", "3", "--out", model), "--channels 1");
        UsageError(Run("train", "--shapes", "--size", "18", "--out", model), "--size 18", "divisible");
        UsageError(Run("train", "--shapes", "--multipliers", "1,x", "--out", model), "--multipliers");
        UsageError(Run("train", "--shapes"), "--out");
        UsageError(Run("train", "--shapes", "--min-snr-gamma", "-1", "--out", model), "--min-snr-gamma must be positive");
        UsageError(Run("train", "--shapes", "--offset-noise", "-0.1", "--out", model), "--offset-noise must not be negative");
        UsageError(Run("train", "--shapes", "--lr-decay", "step", "--out", model), "'step'", "cosine");
        UsageError(Run("train", "--images", In("no-such-folder"), "--out", model), "no-such-folder", "does not exist");
        UsageError(Run("train", "--idx", In("no-such.idx"), "--out", model), "no-such.idx");
        UsageError(Run("generate", "--model", model, "--sampler", "foo", "--out", In("g.png")), "foo", "ddim");
        UsageError(Run("generate", "--model", In("missing.zip"), "--out", In("g.png")), "missing.zip", "does not exist");
        UsageError(Run("generate", "--model", model, "--count", "0", "--out", In("g.png")), "--count");
        UsageError(Run("evaluate", "--model", model, "--count", "4"), "--images", "--shapes");
        UsageError(Run("info"), "--model");
    }

    [Fact]
    public void AnUnknownVerbIsNamedAndTheVerbsAreListed()
    {
        var outcome = Run("frobnicate", "--model", In("m.zip"));
        UsageError(outcome, "Unknown command 'frobnicate'", "train, generate, edit, evaluate, info, import, export");
        Assert.DoesNotContain("Required command was not provided", outcome.Output);
        Assert.DoesNotContain("'--model'", outcome.Output);   // the options of an unknown verb are not reported one by one
    }

    [Theory]
    [InlineData("1,,2")]
    [InlineData("1,2,")]
    [InlineData(",1,2")]
    [InlineData("1, ,2")]
    public void AnEmptyListElementIsAUsageErrorNamingTheOption(string multipliers)
    {
        // A tiny run, so that a list taken as valid fails the test quickly.
        var outcome = Run("train", "--shapes", "--shape-count", "4", "--steps", "1", "--batch", "2", "--base-channels", "8",
            "--multipliers", multipliers, "--out", In("m.zip"));
        UsageError(outcome, "--multipliers", "empty", $"'{multipliers}'");
        Assert.False(File.Exists(In("m.zip")));
    }

    [Fact]
    public void AnArgumentErrorShowsItsMessageWithoutTheParameterName()
    {
        var outcome = Run("train", "--shapes", "--size", "18", "--out", In("m.zip"));
        UsageError(outcome, "ImageSize 18 must be divisible by 4");
        Assert.DoesNotContain("(Parameter", outcome.Output);
    }

    [Fact]
    public void AnEmptyImageFolderIsAUsageError()
    {
        Directory.CreateDirectory(In("empty"));
        File.WriteAllText(In("empty/readme.txt"), "no images here");
        UsageError(Run("train", "--images", In("empty"), "--out", In("m.zip")), "contains no .png or .jpg images");
    }

    [Fact]
    public void HelpExitsWith0()
    {
        var help = Run("--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("train", help.Output);
        Assert.Contains("evaluate", help.Output);
        var trainHelp = Run("train", "--help");
        Assert.Equal(0, trainHelp.ExitCode);
        Assert.Contains("--checkpoint-every", trainHelp.Output);
    }

    [Fact]
    public void AZipThatIsNotAModelExitsWith1NamingTheFile()
    {
        string zip = In("notes.zip");
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Create))
        using (var writer = new StreamWriter(archive.CreateEntry("notes.txt").Open()))
            writer.Write("not a model");
        RuntimeError(Run("generate", "--model", zip, "--out", In("g.png")), zip, "is not a diffusion model zip");
        RuntimeError(Run("info", "--model", zip), zip, "is not a diffusion model zip");
        Assert.False(File.Exists(In("g.png")));

        string garbage = In("garbage.zip");
        File.WriteAllBytes(garbage, [1, 2, 3, 4, 5, 6, 7, 8]);
        RuntimeError(Run("info", "--model", garbage), garbage, "is not a diffusion model zip");
    }

    [Fact]
    public void AnMLNetZipWithoutADiffusionModelExitsWith1()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new Row { A = 1 } });
        string zip = In("copy.zip");
        ml.Model.Save(ml.Transforms.CopyColumns("B", "A").Fit(data), data.Schema, zip);
        RuntimeError(Run("info", "--model", zip), zip, "holds no trained diffusion model", "ColumnCopyingTransformer");
    }

    [Fact]
    public void AnUnreadableImageExitsWith1NamingItsFileAndRow()
    {
        string images = In("images");
        TestImages.WriteShapes(images, count: 3);
        File.WriteAllText(Path.Combine(images, "broken.png"), "this is not a PNG");
        var outcome = Run("train", "--images", images, "--out", In("m.zip"));
        RuntimeError(outcome, "broken.png", "row 0", "cannot be read", "Add --skip-bad-images to skip unreadable images.");
        Assert.DoesNotContain("SkipBadRows", outcome.Output);   // the library's option, not the tool's
        Assert.False(File.Exists(In("m.zip")));
    }

    [Fact]
    public void SkipBadImagesTrainsOnTheRestAndSaysHowManyWereSkipped()
    {
        string images = In("images");
        TestImages.WriteShapes(images, count: 6);
        File.WriteAllText(Path.Combine(images, "broken.png"), "this is not a PNG");
        var outcome = Run(["train", "--images", images, "--channels", "1", .. TinyTraining(3), "--skip-bad-images", "--out", In("m.zip")]);
        Assert.True(outcome.ExitCode == 0, outcome.ToString());
        Assert.Contains("Skipped 1 unreadable image.", outcome.Output);
        Assert.True(File.Exists(In("m.zip")));
    }

    [Fact]
    public void ABadIdxFileExitsWith1SayingWhy()
    {
        string labels = In("labels.idx");
        File.WriteAllBytes(labels, [0, 0, 8, 1, 0, 0, 0, 2, 3, 4]);
        RuntimeError(Run("train", "--idx", labels, "--out", In("m.zip")), "labels.idx", "magic number is 0x00000801");
    }

    private sealed class Row
    {
        public float A { get; set; }
    }
}
