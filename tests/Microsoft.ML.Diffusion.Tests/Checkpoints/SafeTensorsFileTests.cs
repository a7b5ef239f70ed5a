using System.Text;
using Microsoft.ML.Diffusion.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Checkpoints;

/// <summary>SafeTensorsFile: reading a safetensors file on disk one tensor at a time, and its checks of the header.</summary>
public sealed class SafeTensorsFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-safetensors-").FullName;

    internal static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "single-file", name);

    /// <summary>Same dtype, shape and values.</summary>
    internal static bool Same(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && (a.numel() == 0 || a.eq(b).all().item<bool>());

    private string Write(byte[] bytes, string name = "w.safetensors")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // One tensor of every dtype the format stores here.
    private static List<(string Name, Tensor Tensor)> EveryDType()
    {
        var values = tensor(new float[] { -2.5f, 0, 1.25f, 3, 1e-3f, -7 }).reshape(2, 3);
        return
        [
            ("f32", values.clone()), ("f16", values.to(ScalarType.Float16)), ("bf16", values.to(ScalarType.BFloat16)),
            ("f64", values.to(ScalarType.Float64)), ("i64", arange(-3, 3, dtype: ScalarType.Int64)), ("i32", arange(0, 4, dtype: ScalarType.Int32) * 7),
            ("i16", arange(-2, 2, dtype: ScalarType.Int16)), ("i8", arange(-4, 0, dtype: ScalarType.Int8)),
            ("u8", arange(250, 256, dtype: ScalarType.Byte)), ("bool", tensor(new[] { true, false, true })),
            ("scalar", tensor(4.5f)), ("empty", zeros(0, 3)),
        ];
    }

    private static byte[] Header(string json, int dataBytes = 16)
    {
        byte[] text = Encoding.UTF8.GetBytes(json);
        return [.. BitConverter.GetBytes((ulong)text.Length), .. text, .. new byte[dataBytes]];
    }

    private CheckpointFormatException Opening(byte[] bytes) => Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Open(Write(bytes)).Dispose());

    [Fact]
    public void EveryDTypeReadsBackWithItsShapeAndValues()
    {
        using var scope = NewDisposeScope();
        var tensors = EveryDType();
        using var file = SafeTensorsFile.Open(Write(SafeTensors.Write(tensors)));
        Assert.Equal(tensors.Select(t => t.Name), file.Names);
        foreach (var (name, expected) in tensors)
        {
            Assert.Equal(expected.dtype, file.DType(name));
            Assert.Equal(expected.shape, file.Shape(name));
            using var read = file.Read(name);
            Assert.Equal(expected.dtype, read.dtype);
            Assert.True(Same(read, expected), name);
            using var asFloat = file.Read(name, ScalarType.Float32);
            Assert.Equal(ScalarType.Float32, asFloat.dtype);
            Assert.True(Same(asFloat, expected.to(ScalarType.Float32)), $"{name} as float32");
        }
    }

    [Fact]
    public void AFileWrittenByPythonReadsAsTheInMemoryReaderReadsIt()
    {
        using var scope = NewDisposeScope();
        foreach (string path in new[] { Fixture("state-dict.safetensors"), Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", "unet-attn-bf16", "diffusion_pytorch_model.safetensors") })
        {
            var expected = SafeTensors.Read(File.ReadAllBytes(path), path);
            using var file = SafeTensorsFile.Open(path);
            Assert.Equal(expected.Keys.Order(), file.Names.Order());
            foreach (var (name, value) in expected)
            {
                using var read = file.Read(name);
                Assert.True(Same(read, value), $"{path}: {name}");
            }
        }
    }

    [Fact]
    public void TensorsLargerThanOnePieceAreReadInPieces()
    {
        using var scope = NewDisposeScope();
        var big = randn(10, 37);
        var bytes = arange(0, 255, dtype: ScalarType.Byte);
        using var file = SafeTensorsFile.Open(Write(SafeTensors.Write([("a", bytes), ("big", big), ("half", big.to(ScalarType.Float16))])));
        int before = TensorBytes.ChunkBytes;
        try
        {
            TensorBytes.ChunkBytes = 30;   // 7 floats a piece (the last one shorter); 15 halves; 30 bytes
            Assert.True(Same(file.Read("big"), big));
            Assert.True(Same(file.Read("half", ScalarType.Float32), big.to(ScalarType.Float16).to(ScalarType.Float32)));
            Assert.True(Same(file.Read("a"), bytes));
        }
        finally
        {
            TensorBytes.ChunkBytes = before;
        }
    }

    [Fact]
    public void ATruncatedFileNamesTheFirstTensorWhoseBytesAreMissing()
    {
        using var scope = NewDisposeScope();
        byte[] whole = SafeTensors.Write([("a", ones(4)), ("b", ones(4)), ("c", ones(4))]);
        var e = Opening(whole[..^20]);   // c's 16 bytes and 4 of b's
        Assert.Contains("is truncated: tensor 'b' needs bytes 16–32 of the data, which has 28", e.Message);
        e = Opening(whole[..12]);
        Assert.Contains("is truncated: its safetensors header should be", e.Message);
        e = Opening(whole[..5]);
        Assert.Contains("needs at least 8 bytes, it has 5", e.Message);
    }

    [Fact]
    public void BadHeadersAreErrorsThatNameTheProblem()
    {
        Assert.Contains("over safetensors' limit", Opening([.. BitConverter.GetBytes(1UL << 40), .. new byte[64]]).Message);
        Assert.Contains("corrupt safetensors header", Opening(Header("{\"w\": {")).Message);
        Assert.Contains("not a JSON object", Opening(Header("[1, 2]")).Message);
        Assert.Contains("tensor 'w' has dtype F8_E4M3, which this library cannot read",
            Opening(Header("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}")).Message);
        Assert.Contains("tensor 'w' of shape [3] and dtype F32 should have 12 bytes, not 8",
            Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}")).Message);
        Assert.Contains("tensor 'w' has data offsets [8, 0], which is no byte range",
            Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}")).Message);
        Assert.Contains("tensor 'w' has data offsets [-8, -8], which is no byte range",
            Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-8,-8]}}")).Message);
        Assert.Contains("tensor 'w' has a negative size",
            Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2, -1],\"data_offsets\":[0,8]}}")).Message);
        Assert.Contains("tensor 'w' needs bytes 8–24 of the data, which has 16",
            Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}")).Message);
        Assert.Contains("tensors 'u' (bytes 0–8) and 'w' (bytes 4–12) overlap",
            Opening(Header("{\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}")).Message);
        Assert.Contains("tensor 'w' has \"2\" in its shape", Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}")).Message);
        Assert.Contains("tensor 'w' has no data offsets", Opening(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}")).Message);
        Assert.Contains("tensor 'w' has no dtype", Opening(Header("{\"w\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}")).Message);
        Assert.Contains("__metadata__ 'format' is not a string", Opening(Header("{\"__metadata__\":{\"format\":1}}")).Message);
        var duplicate = Assert.ThrowsAny<Exception>(() => SafeTensorsFile.Open(Write(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"))).Dispose());
        Assert.IsType<CheckpointFormatException>(duplicate);
        Assert.Contains("malformed safetensors header", duplicate.Message);   // a name given twice

        // The in-memory reader gives the same errors: both parse with SafeTensorsHeader.
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Read(Header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}"), "w.safetensors"));
        Assert.Contains("w.safetensors is truncated: tensor 'w' needs bytes 8–24", e.Message);
    }

    [Fact]
    public void MetadataAndAnEmptyFileRead()
    {
        using var file = SafeTensorsFile.Open(Write(SafeTensors.Write([], new Dictionary<string, string> { ["format"] = "pt" })));
        Assert.Empty(file.Names);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Throws<KeyNotFoundException>(() => file.Read("w"));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
