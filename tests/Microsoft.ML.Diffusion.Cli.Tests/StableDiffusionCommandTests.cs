using Xunit;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary><c>mldiffusion generate --model &lt;Stable Diffusion folder&gt; --prompt …</c> on the tiny SD 2.x folder made by diffusers.</summary>
public class StableDiffusionCommandTests
{
    private static string Folder(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", name);

    [Fact]
    public void GenerateDrawsThePromptAtTheAskedSizeWithAProgressBar()
    {
        string dir = Path.Combine(Path.GetTempPath(), "sd-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string png = Path.Combine(dir, "grid.png");
            var outcome = CliRunner.Run("generate", "--model", Folder("sd2-tiny"), "--prompt", "a red cat, watercolour", "--negative", "blurry",
                "--width", "64", "--height", "48", "--steps", "3", "--count", "3", "--columns", "3", "--out", png);
            CliRunner.Succeeded(outcome);
            Assert.Contains("step 3/3", outcome.Output);
            Assert.Equal((3 * (64 + 2) + 2, 48 + 2 + 2), CliRunner.PngSize(png));   // 64×48 images in a grid with 2-pixel gaps

            string again = Path.Combine(dir, "again.png");
            CliRunner.Succeeded(CliRunner.Run("generate", "--model", Folder("sd2-tiny"), "--prompt", "a red cat, watercolour", "--negative", "blurry",
                "--width", "64", "--height", "48", "--steps", "3", "--count", "3", "--columns", "3", "--out", again));
            Assert.Equal(File.ReadAllBytes(png), File.ReadAllBytes(again));   // seeded: the same command draws the same images
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void LoraFilesChangeTheImagesAtTheirScale()
    {
        string dir = Path.Combine(Path.GetTempPath(), "sd-cli-lora-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string lora = Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "lora", "kohya.safetensors");
            string[] Args(string png, params string[] extra) =>
                ["generate", "--model", Folder("sd1-tiny"), "--prompt", "a cat", "--width", "32", "--height", "32", "--steps", "2", "--count", "1", "--out", png, .. extra];
            string plain = Path.Combine(dir, "plain.png"), adapted = Path.Combine(dir, "lora.png");
            CliRunner.Succeeded(CliRunner.Run(Args(plain)));
            var outcome = CliRunner.Run(Args(adapted, "--lora", lora + ":0.7"));
            CliRunner.Succeeded(outcome);
            Assert.Contains("kohya layout) at scale 0.7", outcome.Output);
            Assert.NotEqual(File.ReadAllBytes(plain), File.ReadAllBytes(adapted));
            var missing = CliRunner.Run(Args(Path.Combine(dir, "x.png"), "--lora", Path.Combine(dir, "none.safetensors")));
            Assert.NotEqual(0, missing.ExitCode);
            Assert.Contains("does not exist", missing.Output);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BadSizesAndPromptsForPixelModelsAreUsageErrors()
    {
        var odd = CliRunner.Run("generate", "--model", Folder("sd1-tiny"), "--prompt", "x", "--width", "50", "--out", "x.png");
        Assert.NotEqual(0, odd.ExitCode);
        Assert.Contains("--width must be a positive multiple of 8, not 50", odd.Output);
        var pixel = CliRunner.Run("generate", "--diffusers", Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", "unet-attn"), "--prompt", "x", "--out", "x.png");
        Assert.NotEqual(0, pixel.ExitCode);
        Assert.Contains("need a Stable Diffusion model", pixel.Output);
    }
}
