using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Tests.Checkpoints;

/// <summary>
/// docs/model-format.md: format 2 stores safetensors weights in the network's natural shapes; files of format 1 (TestData,
/// written by the library before format 2 with a 1×8×8 UNet trained 10 steps) keep loading and predict as they did.
/// </summary>
public class ModelFormatTests
{
    private static string TestData(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", name);

    private static float[] Floats(string line) => [.. line.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture))];

    private static float[] Forward(DiffusionModel model)
    {
        using var x = linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8);
        using var t = tensor(new long[] { 10, 500 });
        using var noGrad = no_grad();
        using var output = model.Network.forward(x, t);
        return output.data<float>().ToArray();
    }

    [Fact]
    public void AFormat1CheckpointLoadsAndPredictsAsItDidWhenWritten()
    {
        string path = TestData("format1-unet-1x8x8.mldiff");
        using (var stream = File.OpenRead(path)) Assert.Equal(1, DiffusionCheckpoint.Read(stream).Header.FormatVersion);
        using var model = DiffusionModel.Load(path, CPU);
        Assertions.Close(Floats(File.ReadAllText(TestData("format1-unet-1x8x8.forward.txt"))), Forward(model), 1e-4, 1e-7, "forward of a format-1 model");
        // Recorded when DDIM recomputed ε̂ from the clipped x̂₀, which is now an explicit option.
        using var images = model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 5, SamplerOptions = new() { UseClippedModelOutput = true } }, [1, 2]);
        Assertions.Close(Floats(File.ReadAllText(TestData("format1-unet-1x8x8.ddim5-seeds1-2.txt"))), images.data<float>().ToArray(), 1e-4, 1e-5, "DDIM from a format-1 model");
    }

    [Fact]
    public void AFormat1ModelZipLoadsAndGeneratesAsItDidWhenWritten()
    {
        var ml = new MLContext(seed: 1);
        var stage = ml.Model.Load(TestData("format1-generate-stage.zip"), out _);
        var seeds = ml.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 }, new SeedRow { Seed = 2 } });
        var rows = stage.Transform(seeds).GetColumn<VBuffer<float>>("Generated").Select(v => v.DenseValues().ToArray()).ToArray();
        var expected = File.ReadAllLines(TestData("format1-generate-stage.seeds1-2.txt"));
        Assert.Equal(expected.Length, rows.Length);
        for (int i = 0; i < rows.Length; i++) Assertions.Close(Floats(expected[i]), rows[i], 1e-4, 1e-5, $"row {i}");
        (stage as IDisposable)?.Dispose();
    }

    [Fact]
    public void NewFilesAreFormat2WithSafetensorsWeightsInTheirNaturalShapes()
    {
        using var model = DiffusionModel.Load(TestData("format1-unet-1x8x8.mldiff"), CPU);
        using var stream = new MemoryStream();
        model.Save(stream);
        stream.Position = 0;
        var (header, weights) = DiffusionCheckpoint.Read(stream);
        Assert.Equal(2, header.FormatVersion);
        var state = SafeTensors.Read(weights, "test");
        try
        {
            Assert.Equal([1L, 8, 3, 3], state["conv_out.weight"].shape);   // not padded to 16 channels
            Assert.Equal([1L], state["conv_out.bias"].shape);
            Assert.DoesNotContain(state.Keys, k => k.StartsWith("output_conv.conv", StringComparison.Ordinal));
            Assert.Equal(model.Network.state_dict().Keys.ToArray(), state.Keys.ToArray());
        }
        finally
        {
            foreach (var t in state.Values) t.Dispose();
        }
        stream.Position = 0;
        using var reloaded = DiffusionModel.Load(stream, CPU);
        Assert.Equal(Forward(model), Forward(reloaded));
    }

    [Fact]
    public void BadWeightsAreErrorsThatNameTheTensor()
    {
        using var model = DiffusionModel.Load(TestData("format1-unet-1x8x8.mldiff"), CPU);
        var header = model.Header;
        var state = model.Network.state_dict();

        byte[] Rewritten(string name, Tensor replacement)
        {
            var weights = SafeTensors.Write(state.Select(kv => (kv.Key, kv.Key == name ? replacement : kv.Value)));
            using var file = new MemoryStream();
            DiffusionCheckpoint.Write(file, header, weights);
            return file.ToArray();
        }
        Exception Loading(byte[] file) => Assert.Throws<CheckpointFormatException>(() => DiffusionModel.Load(new MemoryStream(file), CPU));

        using var nan = full(state["conv_out.bias"].shape, float.NaN);
        var e = Loading(Rewritten("conv_out.bias", nan));
        Assert.Contains("'conv_out.bias'", e.Message);
        Assert.Contains("NaN", e.Message);

        using var wide = zeros(2, 8, 3, 3);
        e = Loading(Rewritten("conv_out.weight", wide));
        Assert.Contains("'conv_out.weight' has shape [2, 8, 3, 3] but the network expects [1, 8, 3, 3]", e.Message);

        byte[] safetensors = SafeTensors.Write(state.Select(kv => (kv.Key, kv.Value)));
        e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Read(safetensors[..^10], "weights.safetensors"));
        Assert.Contains("weights.safetensors is truncated", e.Message);

        byte[] Header(string json)
        {
            byte[] text = System.Text.Encoding.UTF8.GetBytes(json);
            return [.. BitConverter.GetBytes((ulong)text.Length), .. text, .. new byte[16]];
        }
        e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Read(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}"), "w.safetensors"));
        Assert.Contains("tensor 'w' has \"2\" in its shape", e.Message);
        e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Read(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}"), "w.safetensors"));
        Assert.Contains("tensor 'w' has no data offsets", e.Message);
        e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Read(Header("{\"w\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}"), "w.safetensors"));
        Assert.Contains("tensor 'w' has no dtype", e.Message);
        using var read = SafeTensors.Read(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"), "w.safetensors")["w"];
        Assert.Equal([2L], read.shape);
    }
}
