using BenchmarkDotNet.Attributes;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MicroBenchmarks;

/// <summary>
/// Saving and loading the bench network (1,112,801 parameters) through the checkpoint format (header,
/// weights, SHA-256), in memory so that the disk does not enter the numbers.
/// </summary>
[MemoryDiagnoser]
public class CheckpointBenchmarks
{
    private DiffusionModel _model = null!;
    private byte[] _saved = [];

    [GlobalSetup]
    public void Setup()
    {
        Devices.DiffusionDevice.EnsureInitialized();
        manual_seed(1);
        var network = NoisePredictors.Create(new UNetOptions
        {
            ImageChannels = 1, ImageSize = 28, BaseChannels = 32, ChannelMultipliers = [1, 2, 2],
            ResidualBlocksPerLevel = 1, AttentionResolutions = [7],
        });
        _model = new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
        using var stream = new MemoryStream();
        _model.Save(stream);
        _saved = stream.ToArray();
    }

    [Benchmark]
    public long Save()
    {
        using var stream = new MemoryStream(_saved.Length + 4096);
        _model.Save(stream);
        return stream.Length;
    }

    [Benchmark]
    public long Load()
    {
        using var stream = new MemoryStream(_saved, writable: false);
        using var model = DiffusionModel.Load(stream, CPU);
        return model.Network.parameters().Count();
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();
}
