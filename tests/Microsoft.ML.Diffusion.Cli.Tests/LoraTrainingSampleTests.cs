using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>The LoRA sample with a tiny base model and step counts; skipped when Fashion-MNIST is not installed.</summary>
public sealed class LoraTrainingSampleTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-lora-sample-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static readonly LoraTrainingSampleOptions Tiny = new()
    {
        BaseSteps = 3, BaseImages = 128, BaseChannels = 8, ChannelMultipliers = [1, 2], LoraImages = 4, LoraSteps = 3, Samples = 4, SamplingSteps = 3,
    };

    [SkippableFact]
    public void TrainsTheBaseAndTheLoraThenALoadedBaseGivesTheSameGrids()
    {
        Skip.IfNot(FashionMnist.IsAvailable(out string reason), reason);
        var log = new StringWriter();
        var first = LoraTrainingSample.Run(Path.Combine(_folder, "first"), Tiny, log);

        Assert.True(File.Exists(first.BaseModelZip), first.BaseModelZip);
        foreach (string grid in new[] { first.BeforeGrid, first.AfterGrid })
            Assert.Equal(GridSize(4, columns: 8, size: 28, scale: 2), PngSize(grid));
        Assert.Equal(GridSize(4, columns: 8, size: 28, scale: 2), PngSize(first.TrainingGrid));
        Assert.Equal(4, Directory.GetFiles(first.TrainingImagesFolder, "*.png").Length);
        Assert.Equal((28, 28), PngSize(Path.Combine(first.TrainingImagesFolder, "inverted-00.png")));
        var adapter = SafeTensors.Read(File.ReadAllBytes(first.Adapter), first.Adapter);
        Assert.Contains("mid_block.attentions.0.processor.to_q_lora.down.weight", adapter.Keys);
        Assert.Contains("mid_block.resnets.0.conv1.lora.down.weight", adapter.Keys);
        Assert.Equal(4, adapter["mid_block.attentions.0.processor.to_q_lora.down.weight"].shape[0]);   // rank 4
        Assert.NotEqual(File.ReadAllBytes(first.BeforeGrid), File.ReadAllBytes(first.AfterGrid));
        Assert.True(first.Target.LightBackgroundShare == 1 && first.Target.MeanBrightness > 0.5, $"inverted Fashion-MNIST is light: {first.Target}");
        Assert.Contains("Light-background share of 4 samples", log.ToString());

        // The saved base zip instead of training: the same before grid, and the LoRA trains the same from it.
        var second = LoraTrainingSample.Run(Path.Combine(_folder, "second"), Tiny with { BaseModel = first.BaseModelZip }, TextWriter.Null);
        Assert.Equal(File.ReadAllBytes(first.BeforeGrid), File.ReadAllBytes(second.BeforeGrid));
        Assert.Equal(File.ReadAllBytes(first.AfterGrid), File.ReadAllBytes(second.AfterGrid));
    }
}
