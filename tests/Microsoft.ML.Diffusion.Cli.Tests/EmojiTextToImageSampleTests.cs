using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;
using SkiaSharp;
using Xunit;
using Xunit.Abstractions;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The EmojiTextToImage sample's steps on the real emoji, with a tiny network and step count.</summary>
public sealed class EmojiTextToImageSampleTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-emoji-sample-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [SkippableFact]
    public void TrainsOnEmojiAndDrawsThePromptGrids_WhenDataInstalled()
    {
        Skip.IfNot(EmojiDataset.IsAvailable(out string reason), reason);
        var log = new List<string>();
        var result = EmojiTextToImageSample.Run(_folder, steps: 4, log.Add, maxImages: 64, configure: o =>
        {
            o.BaseChannels = 16;
            o.ChannelMultipliers = [1, 2];
            o.AttentionResolutions = [16];
            o.TextWidth = 32;
            o.TextLayers = 1;
            o.BatchSize = 16;
            o.Device = "cpu";
            o.CheckpointPath = null;
        }, seedsPerPrompt: 2, samplerSteps: 3);
        output.WriteLine(string.Join(Environment.NewLine, log));

        int prompts = EmojiTextToImageSample.DefaultPrompts.Count;
        Assert.Equal(64, result.TrainingImages);
        Assert.Equal(4, result.TrainedSteps);
        Assert.True(File.Exists(result.ModelZip));
        Assert.Equal(EmojiTextToImageSample.GuidanceScales.Count, result.GeneratedGrids.Count);
        foreach (string grid in result.GeneratedGrids)
            Assert.Equal(GridSize(prompts * 2, columns: 2, size: 32, scale: 2), PngSize(grid));
        Assert.Equal(GridSize(prompts, columns: 1, size: 32, scale: 2), PngSize(result.RealGrid));

        // The real grid shows the emoji over white, as the model saw them: the grinning face's corner is transparent.
        using (var real = SKBitmap.Decode(result.RealGrid))
            Assert.Equal(new SKColor(255, 255, 255), real.GetPixel(2 + 1, 2 + 1));

        var lines = File.ReadAllLines(result.PromptsFile).Where(l => !l.StartsWith('#')).ToArray();
        Assert.Equal(prompts, lines.Length);
        Assert.Equal("0\tgrinning face smiling\tGRINNING FACE\tgrinning", lines[0]);
        Assert.Contains(log, l => l.Contains("Loaded 64 emoji"));
    }
}
