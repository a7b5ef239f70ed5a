using Microsoft.ML.Diffusion.Checkpoints;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>
/// <c>train --from M --lora-rank R</c>: a LoRA on a tiny diffusers UNet2DModel (8×8 grey) and on the tiny Stable Diffusion
/// 1.x folder with captions, written in diffusers' layout; <c>generate --lora</c> applies it to the pixel model too;
/// Ctrl+C keeps the LoRA's training state; wrong command lines are usage errors that name the option.
/// </summary>
public sealed class LoraTrainingCommandTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-lora-").FullName;

    private string In(string name) => Path.Combine(_folder, name);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static string Fixture(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "TestData", .. parts]);

    private static string StableDiffusion => Fixture("StableDiffusion", "pipeline", "sd1-tiny");

    // A diffusers pipeline folder: the unet-attn fixture (UNet2DModel, 1×8×8, attention at 4×4) and the DDIM scheduler of ddim-leading.
    private string PixelPipeline()
    {
        string folder = In("pipeline");
        foreach (var (from, to) in new[] { ("unet-attn", "unet"), ("ddim-leading", "scheduler") })
        {
            Directory.CreateDirectory(Path.Combine(folder, to));
            foreach (string file in Directory.GetFiles(Fixture("Diffusers", from)).Where(f => f.EndsWith(".json") || f.EndsWith("model.safetensors")))
                File.Copy(file, Path.Combine(folder, to, Path.GetFileName(file)), overwrite: true);
        }
        return folder;
    }

    private string Images(int count)
    {
        string folder = In("images");
        TestImages.WriteShapes(folder, count);   // 20×20 RGB, resized to the model's size
        return folder;
    }

    private static Dictionary<string, long[]> Shapes(string file)
        => SafeTensors.Read(File.ReadAllBytes(file), file).ToDictionary(kv => kv.Key, kv => kv.Value.shape);

    private static void UsageError(Outcome outcome, params string[] mentions)
    {
        Assert.True(outcome.ExitCode == 2, outcome.ToString());
        foreach (string m in mentions) Assert.Contains(m, outcome.Output);
    }

    [Fact]
    public void APixelModelLoraIsWrittenInDiffusersLayoutAndGenerateAppliesItAtItsScale()
    {
        string pipeline = PixelPipeline(), images = Images(8), lora = In("lora.safetensors");
        var training = Run("train", "--from", pipeline, "--lora-rank", "2", "--images", images, "--steps", "4", "--batch", "4", "--lr", "1e-2", "--warmup", "0",
            "--seed", "1", "--out", lora);
        Succeeded(training);
        Assert.Contains("LoRA of rank 2, alpha 2, on the attention projections of", training.Output);
        Assert.Contains("8 images from", training.Output);
        Assert.Contains("resized to 8×8, grey", training.Output);
        Assert.Contains("step 4/4", training.Output);
        Assert.Contains("Saved the LoRA (16 layers of rank 2", training.Output);
        Assert.DoesNotContain("Note:", training.Output);
        Assert.True(File.Exists(In("lora.state.zip")), "the LoRA's training state is kept beside the adapter");
        Assert.True(File.Exists(In("lora.loss.png")));

        // diffusers v0.21's names: 4 attention blocks × to_q, to_k, to_v, to_out, each a down and an up.
        var tensors = Shapes(lora);
        Assert.Equal(32, tensors.Count);
        Assert.Equal([2, 16], tensors["down_blocks.1.attentions.0.processor.to_q_lora.down.weight"]);
        Assert.Equal([16, 2], tensors["mid_block.attentions.0.processor.to_out_lora.up.weight"]);

        // The same seeds without the LoRA, at scale 0 (nothing added), at 0.5, and from the folder imported as a zip.
        string[] Generate(string png, params string[] extra) => ["generate", "--diffusers", pipeline, "--count", "3", "--steps", "4", "--out", png, .. extra];
        Succeeded(Run(Generate(In("plain.png"))));
        Succeeded(Run(Generate(In("zero.png"), "--lora", lora + ":0")));
        var half = Run(Generate(In("half.png"), "--lora", lora + ":0.5"));
        Succeeded(half);
        Assert.Contains("diffusers layout) at scale 0.5: 16 layers", half.Output);
        Assert.Equal(File.ReadAllBytes(In("plain.png")), File.ReadAllBytes(In("zero.png")));
        Assert.NotEqual(File.ReadAllBytes(In("plain.png")), File.ReadAllBytes(In("half.png")));

        Succeeded(Run("import", "--diffusers", pipeline, "--out", In("base.zip")));
        Succeeded(Run("generate", "--model", In("base.zip"), "--count", "3", "--steps", "4", "--lora", lora + ":0.5", "--out", In("zip-half.png")));
        Assert.Equal(File.ReadAllBytes(In("half.png")), File.ReadAllBytes(In("zip-half.png")));
    }

    /// <summary>Captures output and cancels when a given text is written (as a user pressing Ctrl+C on seeing it).</summary>
    private sealed class CancelOnText(string trigger, CancellationTokenSource source) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(trigger, StringComparison.Ordinal)) source.Cancel();
        }
    }

    [Fact]
    public void CtrlCKeepsTheLoraStateWhichResumesWithTheSameRankAndRefusesAnother()
    {
        string pipeline = PixelPipeline(), images = Images(4), adapter = In("adapter.lora");
        string[] Args(string rank) => ["train", "--from", pipeline, "--lora-rank", rank, "--images", images, "--steps", "4", "--batch", "4", "--seed", "1", "--out", adapter];

        using var cts = new CancellationTokenSource();
        var stopped = CliRunner.Run(cts.Token, new CancelOnText("step 2/4", cts), Args("2"));
        Assert.True(stopped.ExitCode == 130, stopped.ToString());
        Assert.Contains("Note: '" + adapter + "' gets a safetensors file", stopped.Output);
        Assert.Contains("Training stopped after step 2", stopped.Output);
        Assert.True(File.Exists(In("adapter.lora.state.zip")));
        Assert.False(File.Exists(adapter));

        var otherRank = Run(Args("3"));
        Assert.True(otherRank.ExitCode == 1, otherRank.ToString());
        Assert.Contains("\"Rank\":2", otherRank.Output);
        Assert.Contains("--fresh", otherRank.Output);

        var resumed = Run(Args("2"));
        Succeeded(resumed);
        Assert.Contains("resumed at step 2", resumed.Output);
        Assert.DoesNotContain("step 2/4", resumed.Output);
        Assert.Equal([2, 16], Shapes(adapter)["down_blocks.1.attentions.0.processor.to_k_lora.down.weight"]);   // read by content, whatever the name
    }

    [Fact]
    public void AStableDiffusionLoraTrainsOnCaptionsFromAFileAndFromTextFilesBesideTheImages()
    {
        string images = Images(3), lora = In("sd.safetensors"), captions = In("captions.tsv");
        File.WriteAllText(Path.Combine(images, "shape000.txt"), "a bright square\n");
        File.WriteAllText(Path.Combine(images, "shape001.txt"), "a bright disc");
        File.WriteAllText(captions, "# image\tcaption\nshape002.png\ta small shape\n");
        var training = Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--lora-alpha", "1", "--images", images, "--captions", captions,
            "--size", "32", "--steps", "2", "--lr", "1e-3", "--seed", "1", "--out", lora);
        Succeeded(training);
        Assert.Contains("3 captioned images", training.Output);
        Assert.Contains("LoRA of rank 2, alpha 1, on the attention projections of Stable Diffusion model", training.Output);
        Assert.Contains("2 steps of 1 image,", training.Output);
        Assert.Contains("Saved the LoRA (48 layers of rank 2", training.Output);   // 6 transformer blocks × attn1, attn2 × q, k, v, out
        Assert.Equal([2, 64], Shapes(lora)["down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_q_lora.down.weight"]);

        string[] Generate(string png, params string[] extra) =>
            ["generate", "--model", StableDiffusion, "--prompt", "a bright disc", "--width", "32", "--height", "32", "--steps", "2", "--count", "1", "--out", png, .. extra];
        Succeeded(Run(Generate(In("plain.png"))));
        Succeeded(Run(Generate(In("lora.png"), "--lora", lora)));
        Assert.NotEqual(File.ReadAllBytes(In("plain.png")), File.ReadAllBytes(In("lora.png")));
    }

    [Fact]
    public void CaptionsComeFromTheFileFirstThenFromTextFilesBesideTheImages()
    {
        string images = In("captioned");
        Directory.CreateDirectory(Path.Combine(images, "sub"));
        string[] files = ["a.png", "b.png", Path.Combine("sub", "c.png")];
        foreach (string f in files) File.WriteAllBytes(Path.Combine(images, f), []);
        File.WriteAllText(Path.Combine(images, "a.txt"), "beside a\r\nsecond line ");
        File.WriteAllText(Path.Combine(images, "b.txt"), "beside b");
        File.WriteAllText(In("meta.jsonl"), "{\"file_name\": \"b.png\", \"text\": \"from the file\"}\n\n{\"file_name\": \"sub/c.png\", \"text\": \"c in a folder\"}\n");
        Assert.Equal(["beside a second line", "from the file", "c in a folder"], Data.ImageCaptions.Read(images, files, In("meta.jsonl")));

        File.WriteAllText(In("twice.tsv"), "b.png\tone\nb.png\ttwo\n");
        var e = Assert.Throws<UsageException>(() => Data.ImageCaptions.Read(images, files, In("twice.tsv")));
        Assert.Contains("line 2 names 'b.png' a second time", e.Message);
    }

    [Fact]
    public void WrongLoraCommandLinesAreUsageErrorsThatNameTheProblem()
    {
        string pipeline = PixelPipeline(), images = Images(2), lora = In("x.safetensors");
        UsageError(Run("train", "--lora-rank", "4", "--images", images, "--out", lora), "--lora-rank needs --from");
        UsageError(Run("train", "--from", pipeline, "--lora-rank", "0", "--images", images, "--out", lora), "--lora-rank must be positive, not 0");
        UsageError(Run("train", "--from", pipeline, "--lora-rank", "-2", "--images", images, "--out", lora), "--lora-rank must be positive, not -2");
        UsageError(Run("train", "--from", pipeline, "--lora-alpha", "2", "--images", images, "--out", lora), "--lora-alpha and --lora-targets need --lora-rank");
        UsageError(Run("train", "--shapes", "--lora-targets", "to_q", "--out", lora), "--lora-alpha and --lora-targets need --from <model> and --lora-rank");
        UsageError(Run("train", "--from", pipeline, "--lora-rank", "2", "--lora-alpha", "0", "--images", images, "--out", lora), "--lora-alpha must be positive");
        UsageError(Run("train", "--from", pipeline, "--lora-rank", "2", "--lora-targets", "to_q,,to_v", "--images", images, "--out", lora), "--lora-targets has an empty element");
        UsageError(Run("train", "--from", pipeline, "--lora-rank", "2", "--images", images, "--captions", In("c.tsv"), "--out", lora),
            "--captions needs a model with a text encoder", "pixel-space model");
        UsageError(Run("train", "--shapes", "--captions", In("c.tsv"), "--out", lora), "--captions needs --from");

        // Stable Diffusion: LoRAs only, on a folder of captioned images.
        UsageError(Run("train", "--from", StableDiffusion, "--images", images, "--out", In("sd.zip")), "Stable Diffusion model", "--lora-rank");
        UsageError(Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--shapes", "--out", lora), "captioned images", "--images");
        var uncaptioned = Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--images", images, "--out", lora);
        UsageError(uncaptioned, "2 of 2 images have no caption: 'shape000.png', 'shape001.png'", "shape000.txt");
        File.WriteAllText(Path.Combine(images, "shape000.txt"), "a square");
        UsageError(Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--images", images, "--out", lora), "1 of 2 images has no caption: 'shape001.png'");
        File.WriteAllText(In("bad.tsv"), "shape001.png a disc without a tab\n");
        UsageError(Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--images", images, "--captions", In("bad.tsv"), "--out", lora), "line 1", "<tab>");
        File.WriteAllText(In("missing.tsv"), "shape009.png\ta disc\n");
        UsageError(Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--images", images, "--captions", In("missing.tsv"), "--out", lora), "'shape009.png', which is not in the image folder");
        File.WriteAllText(In("bad.jsonl"), "{\"file_name\": \"shape001.png\", \"caption\": \"a disc\"}\n");
        UsageError(Run("train", "--from", StableDiffusion, "--lora-rank", "2", "--images", images, "--captions", In("bad.jsonl"), "--out", lora), "\"file_name\" and \"text\"");
        Assert.False(File.Exists(lora));
    }
}
