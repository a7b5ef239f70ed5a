using System.Diagnostics;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The StableDiffusion sample on the tiny SD 2.x folder diffusers wrote (random weights: the images are noise).</summary>
public sealed class StableDiffusionSampleTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-sd-sample-").FullName;

    private static string Fixture => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "sd2-tiny");

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void DrawsEachPromptWithAThumbnailAndSavesAZipThatRefersToTheModel()
    {
        var log = new StringWriter();
        var options = new StableDiffusionOptions
        {
            Prompts = ["a red cat, watercolour", "a lighthouse at dawn"], NegativePrompt = "blurry",
            Steps = 2, Width = 64, Height = 48, Seed = 7, ThumbnailWidth = 32,
        };
        var result = StableDiffusionSample.Run(Fixture, Path.Combine(_folder, "out"), options, log);
        output.WriteLine(log.ToString());

        Assert.Equal((64, 48), (result.Width, result.Height));
        Assert.Equal(["a red cat, watercolour", "a lighthouse at dawn"], result.Images.Select(i => i.Prompt));
        Assert.Equal([7L, 8L], result.Images.Select(i => i.Seed));
        Assert.Equal(["01-a-red-cat-watercolour.png", "02-a-lighthouse-at-dawn.png"], result.Images.Select(i => Path.GetFileName(i.Path)));
        foreach (var image in result.Images)
        {
            Assert.Equal((64, 48), PngSize(image.Path));
            Assert.Equal((32, 24), PngSize(image.Thumbnail));   // ResizeImages keeps the aspect ratio
            Assert.True(image.Seconds > 0);
        }
        Assert.NotEqual(File.ReadAllBytes(result.Images[0].Path), File.ReadAllBytes(result.Images[1].Path));

        Assert.True(File.Exists(result.ModelZip), result.ModelZip);
        Assert.True(result.ModelZipBytes < 100_000, $"the zip holds {result.ModelZipBytes} bytes; it should refer to the model, not copy it");
        Assert.StartsWith($"'{Path.GetFullPath(Fixture)}' (SHA-256 ", result.ReferencedModel);

        string text = log.ToString();
        Assert.Contains("Drawing 64×48 with euler, 2 steps, guidance 7.5", text);   // the folder's EulerDiscreteScheduler
        Assert.Contains("[2/2] \"a lighthouse at dawn\" (seed 8)", text);
        Assert.Contains($"{result.ModelZipBytes:N0} bytes, refers to '{Path.GetFullPath(Fixture)}'", text);
        Assert.Contains("input columns: Prompt, Negative, Seed", text);
    }

    [Fact]
    public void WithoutAModelItSaysHowToGetOne()
    {
        var (code, text) = RunSample();
        Assert.Equal(1, code);
        Assert.Contains("stable-diffusion-v1-5/stable-diffusion-v1-5", text);
        Assert.Contains("huggingface-cli download", text);
        Assert.Contains("--tokenizer", text);
        Assert.DoesNotContain("://", text);   // names models, gives no addresses

        var (missingCode, missing) = RunSample(Path.Combine(_folder, "no-such-model"));
        Assert.Equal(1, missingCode);
        Assert.Contains("does not exist", missing);
    }

    [Fact]
    public void ASingleFileWithoutATokenizerIsRefusedNamingTheOption()
    {
        var (code, text) = RunSample(Path.Combine(Fixture, "unet", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(1, code);
        Assert.Contains("single checkpoint file, which holds no tokenizer: add --tokenizer", text);
    }

    private static (int ExitCode, string Output) RunSample(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "StableDiffusion.dll"), .. args]) { RedirectStandardOutput = true };
        using var sample = System.Diagnostics.Process.Start(start)!;
        string text = sample.StandardOutput.ReadToEnd();
        sample.WaitForExit();
        return (sample.ExitCode, text);
    }
}
