using Microsoft.ML.Diffusion.Checkpoints;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.Tests.Checkpoints;

/// <summary>ModuleWeights.Load from an ITensorFile: tensor by tensor, through a prefix and a renaming, with the same checks as from memory.</summary>
public sealed class ModuleWeightsFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mldiffusion-moduleweights-").FullName;

    // A module with a linear layer, a convolution, a norm and a buffer-free parameter list.
    private sealed class Tiny : TorchSharp.torch.nn.Module<Tensor, Tensor>
    {
        public readonly TorchSharp.Modules.Linear proj;
        public readonly TorchSharp.Modules.Conv2d conv;
        public readonly TorchSharp.Modules.GroupNorm norm;

        public Tiny() : base(nameof(Tiny))
        {
            proj = Linear(3, 3);
            conv = Conv2d(3, 2, 3);
            norm = GroupNorm(1, 2);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => x;
    }

    private SafeTensorsFile File(IEnumerable<(string, Tensor)> tensors)
    {
        string path = Path.Combine(_dir, $"{Guid.NewGuid():N}.safetensors");
        System.IO.File.WriteAllBytes(path, SafeTensors.Write(tensors));
        return SafeTensorsFile.Open(path);
    }

    // Random values of the module's shapes (a fresh module's norm is all ones, which would hide mix-ups).
    private static Dictionary<string, Tensor> Values(int seed)
    {
        using var generator = new TorchSharp.torch.Generator((ulong)seed);
        using var shapes = new Tiny();
        return shapes.state_dict().ToDictionary(kv => kv.Key, kv => randn(kv.Value.shape, generator: generator).DetachFromDisposeScope());
    }

    [Fact]
    public void APrefixedRenamedFileLoadsTensorByTensorAndLeavesOtherKeysAlone()
    {
        using var scope = NewDisposeScope();
        var values = Values(3);
        var stored = values.Select(kv => ($"model.x_{kv.Key}", kv.Value)).Append(("other.weight", ones(5))).Append(("model.ignored", ones(1)));
        using var file = File(stored);
        using var module = new Tiny();
        ModuleWeights.Load(module, file, prefix: "model.", rename: key => key.StartsWith("x_", StringComparison.Ordinal) ? key[2..] : null);
        foreach (var (name, value) in module.state_dict()) Assert.True(SafeTensorsFileTests.Same(value, values[name]), name);
    }

    [Fact]
    public void HalfPrecisionLoadsIntoAFloatModuleAndA1x1ConvolutionIntoALinearLayer()
    {
        using var scope = NewDisposeScope();
        var values = Values(4);
        var stored = values.Select(kv => (kv.Key, kv.Key == "proj.weight" ? kv.Value.reshape(3, 3, 1, 1) : kv.Value.to(ScalarType.Float16)));
        using var file = File(stored);
        using var module = new Tiny();
        ModuleWeights.Load(module, file);
        Assert.Equal(ScalarType.Float32, module.conv.weight!.dtype);
        Assert.True(SafeTensorsFileTests.Same(module.proj.weight!, values["proj.weight"]));
        Assert.True(SafeTensorsFileTests.Same(module.conv.weight!, values["conv.weight"].to(ScalarType.Float16).to(ScalarType.Float32)));
    }

    [Fact]
    public void MissingUnexpectedMisshapenAndNaNTensorsAreErrorsThatNameThem()
    {
        using var scope = NewDisposeScope();
        var values = Values(5);
        using var module = new Tiny();
        CheckpointFormatException Loading(IEnumerable<(string, Tensor)> tensors, Func<string, string?>? rename = null)
        {
            using var file = File(tensors);
            return Assert.Throws<CheckpointFormatException>(() => ModuleWeights.Load(module, file, rename: rename));
        }
        var all = values.Select(kv => (kv.Key, kv.Value)).ToList();

        var e = Loading(all.Where(t => t.Key != "norm.bias"));
        Assert.Contains("it lacks norm.bias", e.Message);
        e = Loading(all.Append(("conv.extra", ones(1))));
        Assert.Contains("the network has no conv.extra", e.Message);
        e = Loading(all, key => key == "norm.bias" ? "norm.gain" : key);
        Assert.Contains("the network has no norm.gain (from norm.bias)", e.Message);
        e = Loading(all.Append(("twin", ones(2))), key => key == "twin" ? "norm.bias" : key);
        Assert.Contains("tensors 'norm.bias' and 'twin' both map to 'norm.bias'", e.Message);
        e = Loading(all.Select(t => t.Key == "conv.weight" ? (t.Key, zeros(2, 3, 1, 1)) : t));
        Assert.Contains("tensor 'conv.weight' has shape [2, 3, 1, 1] but the network's 'conv.weight' is [2, 3, 3, 3]", e.Message);
        e = Loading(all.Select(t => t.Key == "proj.weight" ? (t.Key, zeros(3, 1, 3)) : t));   // trailing ones only
        Assert.Contains("tensor 'proj.weight' has shape [3, 1, 3]", e.Message);
        e = Loading(all.Select(t => t.Key == "norm.weight" ? (t.Key, full(2, float.NaN)) : t));
        Assert.Contains("tensor 'norm.weight' holds NaN or infinite values", e.Message);
    }

    [Fact]
    public void ATorchCheckpointLoadsTheSameWay()
    {
        using var scope = NewDisposeScope();
        using var file = TorchCheckpointFile.Open(SafeTensorsFileTests.Fixture("lightning.ckpt"));
        using var biased = Linear(3, 3);
        var e = Assert.Throws<CheckpointFormatException>(() => ModuleWeights.Load(biased, file, rename: key => key == "conv1x1" ? "weight" : null));
        Assert.Contains("it lacks bias", e.Message);
        using var linear = Linear(3, 3, hasBias: false);
        ModuleWeights.Load(linear, file, rename: key => key == "conv1x1" ? "weight" : null);
        using var expected = SafeTensorsFile.Open(SafeTensorsFileTests.Fixture("state-dict.safetensors"));
        Assert.True(SafeTensorsFileTests.Same(linear.weight!, expected.Read("conv1x1").reshape(3, 3)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
