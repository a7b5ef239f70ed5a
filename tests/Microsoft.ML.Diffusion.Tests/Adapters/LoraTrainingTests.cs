using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Training;
using Microsoft.ML.Diffusion.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Adapters;

/// <summary>
/// LoRA training: adapters attach to the library's UNet, diffusers' UNet2DModel and Stable Diffusion's UNet by layer
/// name, change nothing until trained, and are all that trains (frozen base, optimiser state only for them); training
/// states hold only the adapters and resume bit for bit; bad settings are refused naming the problem; TrainDiffusion
/// with Lora options fuses the result into the start model, exactly undone by disposing the result.
/// </summary>
public sealed class LoraTrainingTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-lora-training-").FullName;

    // The network UNetOptions build: UNet2DModel with self-attention at 8×8 or, conditioned on text, UNet2DConditionModel
    // with a transformer block (self- and cross-attention) there.
    private static DiffusionModel LibraryModel(ConditioningOptions? condition = null, int seed = 3)
    {
        manual_seed(seed);
        var network = NoisePredictors.Create(DiffusionTrainerTests.TinyNetwork with { Condition = condition ?? new() });
        using (no_grad()) foreach (var p in network.parameters()) p.add_(randn_like(p) * 0.02);   // a "trained" network: nonzero output layer
        return new DiffusionModel(network, new NoiseScheduleOptions(), PredictionType.Epsilon);
    }

    private static DiffusionTrainerOptions Options(int seed = 1) => new() { BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 0, EmaDecay = 0.9, Seed = seed };

    // Equal shapes and values, element for element.
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static float[] Values(IEnumerable<Tensor> tensors) => tensors.SelectMany(t => t.detach().cpu().data<float>().ToArray()).ToArray();

    [Fact]
    public void AdaptersAttachByNameAndChangeNothingUntilTrained()
    {
        var text = new ConditioningOptions { Kind = ConditionKind.Text, VocabularySize = 12, MaxTokens = 4, TextWidth = 16, TextHeads = 2, TextLayers = 1 };
        using var library = LibraryModel(text);
        using var unet2d = TrainedLoraFileTests.UNet2D();
        using var sd = TrainedLoraFileTests.StableDiffusion();
        (DiffusionModel Model, int Layers, string Example)[] cases =
        [
            // Level 1 down (1 block), middle (1), level 1 up (2): one transformer block each, attn1 and attn2.
            (library, 4 * 2 * 4, "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
            // Attention at level 1: 1 down, 1 mid, 2 up blocks, each to_q/to_k/to_v/to_out.0.
            (unet2d, 4 * 4, "down_blocks.1.attentions.0.to_q"),
            // 6 transformer blocks, each attn1 and attn2.
            (sd, 6 * 2 * 4, "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"),
        ];
        foreach (var (model, layers, example) in cases)
        {
            using var scope = NewDisposeScope();
            var x = randn(2, model.NetworkOptions.ImageChannels, model.NetworkOptions.ImageSize, model.NetworkOptions.ImageSize, generator: new Generator(1));
            var t = tensor(new long[] { 10, 700 });
            using var condition = model.NetworkOptions.Condition.Kind switch
            {
                ConditionKind.Text => ConditionBatch.Tokens(tensor(new long[,] { { 1, 2, 3, 0 }, { 4, 5, 0, 0 } })),
                ConditionKind.Prompt => ConditionBatch.PromptStates(randn(2, 77, 32, generator: new Generator(2))),
                _ => null,
            };
            Tensor Run()
            {
                using var noGrad = no_grad();
                return model.Network.Forward(x, t, condition);
            }
            var plain = Run();
            using (var trainer = new DiffusionTrainer(model, new LoraTrainingOptions(), Options()))
            {
                var lora = (LoraNetwork)trainer.TrainedModule;
                Assert.Equal(layers, lora.Names.Count);
                Assert.Contains(example, lora.Names);
                Assert.True(Same(plain, Run()), $"{model.Network.GetType().Name}: new adapters (up = 0) must not change the output");
                Assert.All(model.Network.parameters(), p => Assert.False(p.requires_grad));
                using (no_grad()) foreach (var layer in lora.Layers) layer.Up.normal_(0, 0.1);
                Assert.False(Same(plain, Run()), $"{model.Network.GetType().Name}: adapters with weights must change the output");
            }
            Assert.True(Same(plain, Run()), $"{model.Network.GetType().Name}: disposing the trainer takes the adapters off");
            Assert.All(model.Network.parameters(), p => Assert.True(p.requires_grad));
        }
    }

    [Fact]
    public void OnlyTheAdaptersTrainAndTheOptimiserHoldsOnlyThem()
    {
        using var model = LibraryModel();
        using var data = SyntheticShapes.Generate(16, 16, seed: 2);
        var before = Values(model.Network.parameters());
        using var trainer = new DiffusionTrainer(model, new LoraTrainingOptions { Rank = 2, TargetModules = ["to_q", "to_out.0", "conv1"] }, Options());
        var lora = (LoraNetwork)trainer.TrainedModule;
        long adapterSize = lora.parameters().Sum(p => p.numel());
        Assert.Equal(lora.Layers.Sum(l => l.Down.numel() + l.Up.numel()), adapterSize);

        var optimised = trainer.Optimizer.parameters().ToList();
        Assert.Equal(2 * lora.Names.Count, optimised.Count);
        Assert.Equal(adapterSize, optimised.Sum(p => p.numel()));
        var upBefore = Values(lora.Layers.Select(l => l.Up));
        trainer.Train(data, 3);

        // AdamW's moments exist for the adapters' parameters only: twice their size (exp_avg, exp_avg_sq) plus a step count each.
        using var state = new MemoryStream();
        using (var w = new BinaryWriter(state, System.Text.Encoding.UTF8, leaveOpen: true)) trainer.Optimizer.save_state_dict(w);
        Assert.InRange(state.Length, 2 * adapterSize * sizeof(float), 2 * adapterSize * sizeof(float) + 256 * optimised.Count + 1024);

        Assert.Equal(before, Values(model.Network.parameters()));
        Assert.All(model.Network.parameters(), p => Assert.True(p.grad is null || p.grad.count_nonzero().item<long>() == 0));
        Assert.NotEqual(upBefore, Values(lora.Layers.Select(l => l.Up)));
        Assert.Throws<InvalidOperationException>(() => trainer.ToModel());
    }

    [Fact]
    public void ALoraStateHoldsOnlyTheAdaptersAndResumesBitForBit()
    {
        using var data = SyntheticShapes.Generate(24, 16, seed: 4);
        string path = Path.Combine(_folder, "state.zip");
        var lora = new LoraTrainingOptions { Rank = 3, Alpha = 6 };
        using var straightModel = LibraryModel();
        using var resumedModel = LibraryModel();
        using var straight = new DiffusionTrainer(straightModel, lora, Options());
        straight.Train(data, 6);

        using (var first = new DiffusionTrainer(resumedModel, lora, Options()))
        {
            first.Train(data, 3);
            first.SaveState(path);
        }
        long networkBytes = resumedModel.Network.parameters().Sum(p => p.numel()) * sizeof(float);
        Assert.True(new FileInfo(path).Length < networkBytes / 4, $"a LoRA state of {new FileInfo(path).Length} bytes should be far smaller than the network ({networkBytes} bytes)");

        using var resumed = new DiffusionTrainer(resumedModel, lora, Options(seed: 99));
        resumed.LoadState(path);
        Assert.Equal(3, resumed.StepsDone);
        resumed.Train(data, 3);
        Assert.Equal(Values(straight.TrainedModule.parameters()), Values(resumed.TrainedModule.parameters()));
        Assert.Equal(Values(straight.EmaModule!.parameters()), Values(resumed.EmaModule!.parameters()));

        // Another rank, or a whole-network trainer, is not what the state was written by.
        resumed.Dispose();
        using var other = new DiffusionTrainer(resumedModel, lora with { Rank = 2 }, Options());
        Assert.Contains("different LoRA settings", Assert.Throws<CheckpointFormatException>(() => other.LoadState(path)).Message);
        other.Dispose();
        using var whole = new DiffusionTrainer(DiffusionTrainerTests.TinyNetwork, options: Options(), device: CPU);
        Assert.Contains("LoRA settings", Assert.Throws<CheckpointFormatException>(() => whole.LoadState(path)).Message);
    }

    [Fact]
    public void BadSettingsAreExplained()
    {
        using var model = LibraryModel();
        DiffusionTrainer Make(LoraTrainingOptions lora) => new(model, lora, Options());

        Assert.Contains("rank must be at least 1", Assert.Throws<ArgumentOutOfRangeException>(() => Make(new LoraTrainingOptions { Rank = 0 })).Message);
        foreach (double alpha in new[] { double.NaN, double.PositiveInfinity, 0, -1 })
            Assert.Contains("alpha must be positive and finite", Assert.Throws<ArgumentOutOfRangeException>(() => Make(new LoraTrainingOptions { Alpha = alpha })).Message);
        Assert.Contains("TargetModules is empty", Assert.Throws<ArgumentException>(() => Make(new LoraTrainingOptions { TargetModules = [] })).Message);
        Assert.Contains("unusable layer name", Assert.Throws<ArgumentException>(() => Make(new LoraTrainingOptions { TargetModules = ["to_q", ".to_v"] })).Message);

        var e = Assert.Throws<ArgumentException>(() => Make(new LoraTrainingOptions { TargetModules = ["to_q", "qkv"] }));
        Assert.Contains("'qkv' matches no layer", e.Message);
        Assert.Contains("Linear and Conv2d layers are named like '", e.Message);   // some of the network's own names
        Assert.Contains("'conv1'", e.Message);
        Assert.Contains("'to_q'", e.Message);
        e = Assert.Throws<ArgumentException>(() => Make(new LoraTrainingOptions { TargetModules = ["attentions.0"] }));
        Assert.Contains("SelfAttention2D", e.Message);
        Assert.Contains("Linear and Conv2d layers only", e.Message);

        Assert.All(model.Network.parameters(), p => Assert.True(p.requires_grad));   // a refused trainer leaves the model as it was

        // A network without attention has nothing to adapt by default.
        using var plain = nn.Sequential(("conv1", nn.Conv2d(1, 4, 3, padding: 1)), ("linear", nn.Linear(4, 4)));
        e = Assert.Throws<ArgumentException>(() => LoraNetwork.Attach(plain, new LoraTrainingOptions()));
        Assert.Contains("no attention projections", e.Message);
        Assert.Contains("'conv1', 'linear'", e.Message);

        // Two trainers cannot adapt one network at once.
        using (Make(new LoraTrainingOptions()))
            Assert.Contains("already has LoRA adapters", Assert.Throws<ArgumentException>(() => Make(new LoraTrainingOptions())).Message);
        using (Make(new LoraTrainingOptions())) { }   // and after disposal it can again

        // TrainDiffusion needs the model to adapt.
        var ml = new MLContext(seed: 1);
        e = Assert.Throws<ArgumentException>(() => ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions { Lora = new LoraTrainingOptions() }));
        Assert.Contains("StartFrom", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.TrainDiffusion(new DiffusionTrainingOptions { StartFrom = model, Lora = new LoraTrainingOptions { Rank = -2 } }));
    }

    private sealed class Row
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = new float[64];
    }

    [Fact]
    public void TrainDiffusionFusesTheTrainedLoraIntoTheStartModel()
    {
        var ml = new MLContext(seed: 1);
        using var start = TrainedLoraFileTests.UNet2D();
        var before = Values(start.Network.parameters());
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 16).Select(i => new Row
        {
            Pixels = Enumerable.Range(0, 64).Select(p => (float)((i * 7 + p * 3) % 256)).ToArray(),
        }).ToList());
        var options = new DiffusionTrainingOptions
        {
            ImageColumnName = "Pixels", ImageChannels = 1, StartFrom = start, Lora = new LoraTrainingOptions { Rank = 2 },
            TrainingSteps = 4, BatchSize = 8, WarmupSteps = 0, LearningRate = 1e-2, Seed = 1, Device = "cpu",
            CheckpointPath = Path.Combine(_folder, "lora-state.zip"),
        };
        var trained = ml.Transforms.TrainDiffusion(options).Fit(data);
        Assert.Same(start, trained.Model);
        Assert.NotNull(trained.Lora);
        Assert.True(trained.Lora!.IsFused);
        Assert.Equal(16, trained.Lora.UNetLayers);
        Assert.NotEqual(before, Values(start.Network.parameters()));
        Assert.True(File.Exists(options.CheckpointPath));

        string file = trained.Lora.Save(Path.Combine(_folder, "trained.safetensors"));
        var tensors = SafeTensors.Read(File.ReadAllBytes(file), file);
        Assert.Contains("down_blocks.1.attentions.0.processor.to_q_lora.down.weight", tensors.Keys);
        Assert.Equal(32, tensors.Count);

        // Resuming a finished run from its state trains nothing and gives the same adapters.
        using var other = TrainedLoraFileTests.UNet2D();
        using (var again = ml.Transforms.TrainDiffusion(options with { StartFrom = other }).Fit(data))
        {
            string file2 = again.Lora!.Save(Path.Combine(_folder, "again.safetensors"));
            var tensors2 = SafeTensors.Read(File.ReadAllBytes(file2), file2);
            Assert.All(tensors, kv => Assert.True(Same(kv.Value, tensors2[kv.Key]), kv.Key));
        }

        trained.Dispose();   // unfuses: the start model is back, and still the caller's
        Assert.Equal(before, Values(start.Network.parameters()));
        Assert.All(start.Network.parameters(), p => Assert.True(p.requires_grad));
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
