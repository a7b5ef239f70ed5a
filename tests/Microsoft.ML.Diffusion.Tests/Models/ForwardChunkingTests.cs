using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Models;

/// <summary>Large batches (and guidance's doubled batch) run through the network in chunks; the output must not change.</summary>
public sealed class ForwardChunkingTests
{
    internal static DiffusionModel RandomClassModel()
    {
        manual_seed(5);
        var network = NoisePredictors.Create(new UNetOptions
        {
            ImageChannels = 1, ImageSize = 16, BaseChannels = 16, ChannelMultipliers = [1, 2], AttentionResolutions = [8],
            Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = 3 },
        });
        using (no_grad())
            foreach (var p in network.parameters()) p.add_(rand_like(p) * 0.1);   // the output layer starts at zero
        return new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
    }

    [Fact]
    public void ChunkedForwardEqualsOneForward()
    {
        using var model = RandomClassModel();
        using var scope = NewDisposeScope();
        var x = randn(10, 1, 16, 16, generator: new Generator(1));
        var t = randint(0, 1000, [10], dtype: ScalarType.Int64, generator: new Generator(2));
        using var condition = ConditionBatch.Classes(tensor(new long[] { 0, 1, 2, 0, 1, 2, 0, 1, 2, 0 }));
        using var inference = inference_mode();

        var whole = model.AsDenoiser(forwardBatchSize: 1000)(x, t);
        Assert.True(whole.abs().max().item<float>() > 0.01f, "the test network must not output zeros");
        Assert.True(model.AsDenoiser(forwardBatchSize: 3)(x, t).allclose(whole, rtol: 1e-4, atol: 1e-5));
        foreach (double w in new[] { 0.0, 1.0, 3.0 })
        {
            var guidedWhole = model.AsDenoiser(condition, w, forwardBatchSize: 1000)(x, t);
            var guidedChunks = model.AsDenoiser(condition, w, forwardBatchSize: 4)(x, t);   // 20 rows → 5 chunks of 4
            Assert.True(guidedChunks.allclose(guidedWhole, rtol: 1e-4, atol: 1e-5), $"guidance {w}");
        }
    }

    [Fact]
    public void GenerateSplitsTheBatchAndRejectsANonPositiveChunk()
    {
        using var model = RandomClassModel();
        long[] seeds = [1, 2, 3, 4, 5];
        using var labels = tensor(new long[] { 0, 1, 2, 0, 1 });
        using var condition = ConditionBatch.Classes(labels);
        var options = new GenerationOptions { Sampler = Microsoft.ML.Diffusion.Samplers.SamplerName.Ddim, Steps = 4, GuidanceScale = 2 };
        using var whole = model.Generate(options, seeds, condition: condition);
        using var chunked = model.Generate(options with { ForwardBatchSize = 2 }, seeds, condition: condition);
        Assert.True(chunked.allclose(whole, rtol: 1e-3, atol: 1e-4));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate(options with { ForwardBatchSize = 0 }, seeds, condition: condition));
        Assert.Contains("ForwardBatchSize", e.Message);
    }
}
