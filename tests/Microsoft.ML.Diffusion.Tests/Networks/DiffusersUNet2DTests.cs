using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Networks;

/// <summary>diffusers' UNet2DModel: the fixtures diffusers v0.21.4 wrote (TestData/Diffusers) load and give diffusers' outputs.</summary>
public sealed class DiffusersUNet2DTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-diffusers-").FullName;

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", name);

    // A copy of the unet-attn fixture to spoil.
    private string Copy()
    {
        string folder = Path.Combine(_folder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(Fixture("unet-attn"))) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    private static void EditConfig(string folder, Func<string, string> edit)
    {
        string path = Path.Combine(folder, "config.json");
        File.WriteAllText(path, edit(File.ReadAllText(path)));
    }

    private static void EditWeights(string folder, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(folder, "diffusion_pytorch_model.safetensors");
        var weights = SafeTensors.Read(File.ReadAllBytes(path), path);
        edit(weights);
        File.WriteAllBytes(path, SafeTensors.Write(weights.Select(kv => (kv.Key, kv.Value))));
    }

    [Theory]
    [InlineData("unet-attn", "unet-attn")]
    [InlineData("unet-ddpm", "unet-ddpm")]
    [InlineData("unet-fourier", "unet-fourier")]
    [InlineData("unet-attn-fp16", "unet-attn-fp16")]
    [InlineData("unet-attn-bf16", "unet-attn-bf16")]
    [InlineData("unet-attn-bin", "unet-attn")]             // PyTorch pickles, read with TorchSharp.PyBridge
    [InlineData("unet-attn-fp16-bin", "unet-attn-fp16")]
    [InlineData("unet-attn-bf16-bin", "unet-attn-bf16")]
    public void AFolderDiffusersWroteGivesDiffusersOutputs(string name, string reference)
    {
        using var scope = NewDisposeScope();
        using var network = DiffusersUNetFolder.Load(Fixture(name));
        var io = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(reference), "io.safetensors")), reference);
        using var condition = io.TryGetValue("class_labels", out var labels) ? ConditionBatch.Classes(labels) : null;
        using var noGrad = no_grad();
        var output = network.Forward(io["sample"], io["timestep"], condition);
        var expected = io["output"];
        Assert.Equal(expected.shape, output.shape);
        double error = (output - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        Assert.True(error <= 1e-4, $"{name}: largest difference is {error:E2} of the largest output");
    }

    // google/ddpm-cifar10-32's exact architecture with random weights from diffusers (143 MB, not committed). Write it with
    // make_fixtures.py --cifar10 DIR (its docstring gives the rest) and set MLDIFFUSION_CIFAR10_FIXTURE to DIR.
    [SkippableFact]
    public void GoogleDdpmCifar10ArchitectureLoadsEveryTensorInUnderTwoSecondsAndMatchesDiffusers()
    {
        string? folder = Environment.GetEnvironmentVariable("MLDIFFUSION_CIFAR10_FIXTURE");
        Skip.If(string.IsNullOrEmpty(folder) || !File.Exists(Path.Combine(folder, "config.json")),
            "Set MLDIFFUSION_CIFAR10_FIXTURE to the folder written by 'make_fixtures.py --diffusers <diffusers src> --cifar10 <folder>' to run this test.");
        using var scope = NewDisposeScope();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var network = DiffusersUNetFolder.Load(folder!);   // every name and shape must match the file, both ways
        double seconds = clock.Elapsed.TotalSeconds;
        Assert.Equal(35_746_307, network.parameters().Sum(p => p.numel()));
        Assert.True(seconds < 2, $"loading took {seconds:F2} s");
        var io = SafeTensors.Read(File.ReadAllBytes(Path.Combine(folder!, "io.safetensors")), "io");
        using var noGrad = no_grad();
        var output = network.Forward(io["sample"], io["timestep"], null);
        double error = (output - io["output"]).abs().max().item<float>() / io["output"].abs().max().item<float>();
        Assert.True(error <= 1e-4, $"largest difference is {error:E2} of the largest output");
    }

    [Fact]
    public void BadFoldersFailNamingTheFileAndTheFieldOrTensor()
    {
        var missing = Assert.Throws<DirectoryNotFoundException>(() => DiffusersUNetFolder.Load(Path.Combine(_folder, "nowhere")));
        Assert.Contains("nowhere", missing.Message);

        string noConfig = Copy();
        File.Delete(Path.Combine(noConfig, "config.json"));
        Assert.Contains("has no config.json", Assert.Throws<FileNotFoundException>(() => DiffusersUNetFolder.Load(noConfig)).Message);

        string noWeights = Copy();
        File.Delete(Path.Combine(noWeights, "diffusion_pytorch_model.safetensors"));
        Assert.Contains("neither diffusion_pytorch_model.safetensors nor diffusion_pytorch_model.bin", Assert.Throws<FileNotFoundException>(() => DiffusersUNetFolder.Load(noWeights)).Message);

        string badPickle = Copy();
        File.Delete(Path.Combine(badPickle, "diffusion_pytorch_model.safetensors"));
        File.WriteAllBytes(Path.Combine(badPickle, "diffusion_pytorch_model.bin"), File.ReadAllBytes(Path.Combine(Fixture("unet-attn-bin"), "diffusion_pytorch_model.bin"))[..4000]);
        Assert.Contains("diffusion_pytorch_model.bin", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(badPickle)).Message);

        string block = Copy();
        EditConfig(block, c => c.Replace("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\""));
        var blockError = Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(block));
        Assert.Contains("down_block_types", blockError.Message);
        Assert.Contains("CrossAttnDownBlock2D", blockError.Message);

        string field = Copy();
        EditConfig(field, c => c.Replace("\"act_fn\": \"silu\"", "\"act_fn\": \"tanh\""));
        var fieldError = Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(field));
        Assert.Contains("act_fn", fieldError.Message);
        Assert.Contains("tanh", fieldError.Message);

        string unknown = Copy();
        EditConfig(unknown, c => c.Replace("\"act_fn\"", "\"cross_attention_dim\": 768, \"act_fn\""));
        Assert.Contains("cross_attention_dim", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(unknown)).Message);

        string shape = Copy();
        EditWeights(shape, w => w["conv_in.weight"] = zeros(8, 1, 5, 5));
        var shapeError = Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(shape));
        Assert.Contains("'conv_in.weight' has shape [8, 1, 5, 5] but the network expects [8, 1, 3, 3]", shapeError.Message);

        string lacking = Copy();
        EditWeights(lacking, w => w.Remove("mid_block.attentions.0.to_q.weight"));
        Assert.Contains("mid_block.attentions.0.to_q.weight", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(lacking)).Message);

        string extra = Copy();
        EditWeights(extra, w => w["mid_block.attentions.0.query.weight"] = zeros(16, 16));
        Assert.Contains("mid_block.attentions.0.query.weight", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(extra)).Message);

        string nan = Copy();
        EditWeights(nan, w => w["conv_out.bias"] = full(1, float.NaN));
        Assert.Contains("'conv_out.bias' holds NaN", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(nan)).Message);

        string truncated = Copy();
        string weightsPath = Path.Combine(truncated, "diffusion_pytorch_model.safetensors");
        File.WriteAllBytes(weightsPath, File.ReadAllBytes(weightsPath)[..5000]);
        Assert.Contains("diffusion_pytorch_model.safetensors", Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(truncated)).Message);
    }

    [Fact]
    public void ABinFileThatIsNotAPyTorchCheckpointIsNamedAsSuch()
    {
        string folder = Copy();
        File.Delete(Path.Combine(folder, "diffusion_pytorch_model.safetensors"));
        string bin = Path.Combine(folder, "diffusion_pytorch_model.bin");
        var bytes = new byte[4096];
        new Random(7).NextBytes(bytes);
        bytes[0] = 0x13;   // not a zip's 'P', whatever the seed gives
        File.WriteAllBytes(bin, bytes);
        var random = Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(folder));
        Assert.Contains($"'{bin}' is not a PyTorch checkpoint", random.Message);
        Assert.DoesNotContain("old PyTorch format", random.Message);

        // torch.save(..., _use_new_zipfile_serialization=False) starts with the legacy magic number, pickled with protocol 2 (or 4 and 5, framed).
        byte[] magic = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
        foreach (byte[] head in new byte[][] { [0x80, 0x02, .. magic], [0x80, 0x04, 0x95, 0x0d, 0, 0, 0, 0, 0, 0, 0, .. magic] })
        {
            File.WriteAllBytes(bin, [.. head, .. bytes]);
            var legacy = Assert.Throws<CheckpointFormatException>(() => DiffusersUNetFolder.Load(folder));
            Assert.Contains($"'{bin}'", legacy.Message);
            Assert.Contains("old PyTorch format", legacy.Message);
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
