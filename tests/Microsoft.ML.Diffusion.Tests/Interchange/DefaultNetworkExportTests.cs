using System.Text.Json.Nodes;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Interchange;

/// <summary>
/// Every kind of model TrainDiffusion trains with its default network exports with SaveDiffusers, and diffusers v0.21.4
/// gives the same outputs on the exported folder (TestData/DiffusersDefaults: folders this class wrote once, and what
/// diffusers computed on them). The committed folders stay representative: today's default training exports the same
/// configuration and tensors.
/// </summary>
public sealed class DefaultNetworkExportTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-defaults-").FullName;

    public static TheoryData<string> Kinds => ["unconditional", "class", "text", "vector"];

    private static string Fixture(string kind) => Path.Combine(AppContext.BaseDirectory, "TestData", "DiffusersDefaults", kind);

    private sealed class Row
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = [];
        public string Label { get; set; } = "";
        public string Prompt { get; set; } = "";
        [VectorType(3)]
        public float[] Features { get; set; } = [];
    }

    // 24 tiny images of three kinds (a bright disc, a bright square, a dark frame), with their labels, prompts and one-hot features.
    private static Row[] Rows() => [.. Enumerable.Range(0, 24).Select(i =>
    {
        int kind = i % 3;
        var pixels = new float[64];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
            {
                double d = Math.Sqrt((x - 3.5) * (x - 3.5) + (y - 3.5) * (y - 3.5));
                bool on = kind switch { 0 => d < 2.5 + (i % 4) * 0.3, 1 => Math.Max(Math.Abs(x - 3.5), Math.Abs(y - 3.5)) < 2.5, _ => x is 0 or 7 || y is 0 or 7 };
                pixels[y * 8 + x] = on ? 0.9f : 0.1f + 0.01f * ((x + y + i) % 5);
            }
        return new Row
        {
            Pixels = pixels,
            Label = kind switch { 0 => "disc", 1 => "square", _ => "frame" },
            Prompt = kind switch { 0 => "a round disc", 1 => "a square box", _ => "a dark frame" },
            Features = [kind == 0 ? 1 : 0, kind == 1 ? 1 : 0, kind == 2 ? 1 : 0],
        };
    })];

    // TrainDiffusion with its default network at a tiny size, three steps: the model each committed folder was written from.
    private static DiffusionModel Train(string kind)
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows());
        var options = new DiffusionTrainingOptions
        {
            ImageColumnName = "Pixels", ImageChannels = 1, PixelRange = PixelRange.Unit,
            BaseChannels = 8, ChannelMultipliers = [1, 2], NormGroups = 4, AttentionHeads = 2,
            TextWidth = 16, TextLayers = 1, TextHeads = 2, MaxTokens = 4,
            TrainingSteps = 3, BatchSize = 8, WarmupSteps = 0, EmaDecay = 0, Seed = 1, Device = "cpu",
            ConditionColumnName = kind switch { "class" => "Class", "text" => "Tokens", "vector" => "Features", _ => null },
        };
        IEstimator<ITransformer> pipeline = kind switch
        {
            "class" => ml.Transforms.Conversion.MapValueToKey("Class", "Label").Append(ml.Transforms.TrainDiffusion(options)),
            "text" => ml.Transforms.Text.TokenizeIntoWords("Tokens", "Prompt").Append(ml.Transforms.Conversion.MapValueToKey("Tokens"))
                .Append(ml.Transforms.TrainDiffusion(options)),
            _ => ml.Transforms.TrainDiffusion(options),
        };
        var fitted = pipeline.Fit(data);
        var model = DiffusionTrainingTransformer.FindModel(fitted);
        // The transformer owns the model; a copy through the library's own format outlives it.
        using var stream = new MemoryStream();
        model.Save(stream);
        stream.Position = 0;
        (fitted as IDisposable)?.Dispose();
        return DiffusionModel.Load(stream, CPU);
    }

    // Seeded inputs for the network: four samples at four timesteps, with conditions, the last row null (dropped).
    private static Dictionary<string, Tensor> Inputs(DiffusionModel model, string kind)
    {
        var generator = new Generator(11);
        var inputs = new Dictionary<string, Tensor>
        {
            ["sample"] = randn(4, 1, 8, 8, generator: generator),
            ["timestep"] = tensor(new long[] { 3, 250, 611, 999 }),
            ["null"] = tensor(new long[] { 0, 0, 0, 1 }),
        };
        switch (kind)
        {
            case "class": inputs["class_labels"] = tensor(new long[] { 0, 1, 2, 3 }); break;   // 3: the learned null class
            case "text": inputs["tokens"] = tensor(new long[,] { { 1, 2, 3, 0 }, { 1, 4, 5, 0 }, { 1, 6, 7, 0 }, { 1, 2, 0, 0 } }); break;
            case "vector": inputs["vectors"] = tensor(new float[,] { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 }, { 0.5f, 0.5f, 0 } }); break;
        }
        if (model.Network is UNet2DConditionNoisePredictor { ConditionEncoder: { } encoder })
        {
            using var condition = Condition(inputs, kind)!;
            using var noGrad = no_grad();
            inputs["encoder_hidden_states"] = encoder.Encode(condition, 4, CPU);
        }
        return inputs;
    }

    // The library's condition for the inputs: class labels (the null class's label marks a null row), tokens or vectors.
    private static ConditionBatch? Condition(IReadOnlyDictionary<string, Tensor> inputs, string kind)
    {
        using var isNull = inputs["null"].to(ScalarType.Bool);
        using ConditionBatch? plain = kind switch
        {
            "class" => ConditionBatch.Classes(where(isNull, zeros_like(inputs["class_labels"]), inputs["class_labels"])),
            "text" => ConditionBatch.Tokens(inputs["tokens"]),
            "vector" => ConditionBatch.Vectors(inputs["vectors"]),
            _ => null,
        };
        return plain?.WithNull(isNull);
    }

    private static double RelativeError(Tensor actual, Tensor expected) =>
        (actual - expected).abs().max().item<float>() / expected.abs().max().item<float>();

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TheExportedDefaultNetworkGivesDiffusersOutputs(string kind)
    {
        using var scope = NewDisposeScope();
        using var model = DiffusersFormat.Load(Fixture(kind), CPU);
        var inputs = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(kind), "inputs.safetensors")), kind);
        var reference = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(kind), "diffusers.safetensors")), kind);
        using var condition = Condition(inputs, kind);
        using var noGrad = no_grad();
        var output = model.Network.Forward(inputs["sample"], inputs["timestep"], condition);
        Assert.Equal(reference["output"].shape, output.shape);
        double error = RelativeError(output, reference["output"]);
        Assert.True(error <= 1e-4, $"{kind}: largest difference from diffusers is {error:E2} of the largest output");
        if (model.Network is UNet2DConditionNoisePredictor { ConditionEncoder: { } encoder })
        {
            // diffusers ran the UNet on the states the encoder gave when the folder was written; it gives them still.
            var states = encoder.Encode(condition, 4, CPU);
            Assert.True(RelativeError(states, inputs["encoder_hidden_states"]) <= 1e-6, $"{kind}: the condition encoder's states changed");
        }
    }

    [Fact]
    public void DDPMPipelineOnTheExportedUnconditionalFolderGivesTheLibrarysImages()
    {
        using var scope = NewDisposeScope();
        using var model = DiffusersFormat.Load(Fixture("unconditional"), CPU);
        var reference = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture("unconditional"), "diffusers.safetensors")), "unconditional");
        var mapping = DiffusersSchedulerConfig.Read(File.ReadAllText(Path.Combine(Fixture("unconditional"), "scheduler", "scheduler_config.json")), "scheduler");
        using var sampler = DiffusionSamplers.Create(mapping.Sampler, NoiseSchedule.Create(mapping.Schedule), mapping.Options);
        var stepNoise = reference["pipeline_step_noise"];
        sampler.SetTimesteps((int)reference["pipeline_steps"].item<long>());
        using var noGrad = no_grad();
        var x = reference["pipeline_initial_noise"] * sampler.InitialNoiseScale;
        for (int i = 0; i < sampler.Timesteps.Count; i++)
        {
            var output = model.Network.Forward(x, full(x.shape[0], (long)sampler.Timesteps[i], dtype: int64), null);
            using var step = sampler.Step(output, i, x, i < stepNoise.shape[0] ? stepNoise[i] : zeros_like(x));
            x = step.PreviousSample.clone();
        }
        // DDPMPipeline's output_type "np": (x / 2 + 0.5) clamped to [0, 1], channels last.
        var images = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1);
        double error = (images - reference["pipeline_images"]).abs().max().item<float>();
        Assert.True(error <= 1e-4, $"DDPMPipeline's images differ from the library's by {error:E2}");
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TodaysDefaultTrainingExportsTheCommittedShape(string kind)
    {
        using var model = Train(kind);
        string folder = Path.Combine(_folder, kind);
        model.SaveDiffusers(folder);

        string[] Files(string root) => [.. Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
            .Where(f => f is not ("inputs.safetensors" or "diffusers.safetensors")).Order(StringComparer.Ordinal)];
        Assert.Equal(Files(Fixture(kind)), Files(folder));
        foreach (string file in Files(folder))
        {
            string committed = Path.Combine(Fixture(kind), file), written = Path.Combine(folder, file);
            if (file.EndsWith(".json", StringComparison.Ordinal))
            {
                Assert.True(JsonNode.DeepEquals(JsonNode.Parse(File.ReadAllText(committed)), JsonNode.Parse(File.ReadAllText(written))),
                    $"{kind}: {file} differs from the committed fixture:\n{File.ReadAllText(written)}");
            }
            else
            {
                var a = SafeTensors.Read(File.ReadAllBytes(committed), committed);
                var b = SafeTensors.Read(File.ReadAllBytes(written), written);
                Assert.Equal(a.Keys.Order(StringComparer.Ordinal), b.Keys.Order(StringComparer.Ordinal));
                foreach (var (name, tensor) in a) Assert.True(tensor.shape.SequenceEqual(b[name].shape), $"{kind}: {file}: '{name}' changed shape");
                foreach (var t in a.Values.Concat(b.Values)) t.Dispose();
            }
        }

        // The folder reads back as the model that wrote it.
        using var scope = NewDisposeScope();
        using var loaded = DiffusersFormat.Load(folder, CPU);
        var inputs = Inputs(model, kind);
        using var condition = Condition(inputs, kind);
        using var noGrad = no_grad();
        Assert.Equal(model.Network.Forward(inputs["sample"], inputs["timestep"], condition).data<float>().ToArray(),
            loaded.Network.Forward(inputs["sample"], inputs["timestep"], condition).data<float>().ToArray());
    }

    /// <summary>
    /// Writes the fixture folders (the exported model and inputs.safetensors) into MLDIFFUSION_WRITE_DEFAULT_FIXTURES;
    /// TestData/DiffusersDefaults/make_fixtures.py then adds what diffusers computes on them.
    /// </summary>
    [SkippableFact]
    public void WriteTheFixtureFolders()
    {
        string? target = Environment.GetEnvironmentVariable("MLDIFFUSION_WRITE_DEFAULT_FIXTURES");
        Skip.If(string.IsNullOrEmpty(target), "Set MLDIFFUSION_WRITE_DEFAULT_FIXTURES to a folder to write the fixtures there.");
        foreach (string kind in Kinds)
        {
            using var model = Train(kind);
            string folder = Path.Combine(target!, kind);
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            model.SaveDiffusers(folder);
            using var scope = NewDisposeScope();
            var inputs = Inputs(model, kind);
            File.WriteAllBytes(Path.Combine(folder, "inputs.safetensors"), SafeTensors.Write(inputs.Select(kv => (kv.Key, kv.Value))));
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
