using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Interchange;
using Microsoft.ML.Diffusion.Pipelines;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// Whole text-to-image runs against diffusers v0.21.4's own StableDiffusionPipeline on tiny SD 1.x (PNDM, ε) and SD 2.x
/// (Euler, v-prediction, penultimate text layer, "!" padding, non-square) folders: the folder loads, the prompts
/// tokenize and encode to diffusers' prompt_embeds, and the guided loop from the same latents decodes to its images.
/// </summary>
public class TextToImagePipelineTests
{
    private static string Folder(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", name);

    private static JsonObject Call(string name)
        => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "fixtures.json")))!["pipelines"]![name]!["call"]!;

    private static string[] Prompts()
        => JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", "fixtures.json")))!["prompts"]!
            .AsArray().Select(p => p!.GetValue<string>()).ToArray();

    [Theory]
    [InlineData("sd1-tiny")]
    [InlineData("sd2-tiny")]
    public void TheFolderGeneratesDiffusersImagesFromTheSameLatents(string name)
    {
        var io = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Folder(name), "io.safetensors")), name);
        using var model = StableDiffusionFormat.Load(Folder(name), CPU);
        Assert.True(model.IsLatent);
        Assert.True(model.TakesPrompts);

        using var states = model.Prompts!.Encode(Prompts(), CPU);
        AssertClose(io["prompt_embeds"], states, $"{name}: prompt states");
        using var negativeStates = model.Prompts.Encode(["", ""], CPU);
        AssertClose(io["negative_prompt_embeds"], negativeStates, $"{name}: empty prompt states");

        var call = Call(name);
        var options = GenerationOptions.FromDiffusers(Folder(name)) with
        {
            Steps = call["num_inference_steps"]!.GetValue<int>(),
            GuidanceScale = call["guidance_scale"]!.GetValue<double>(),
            Height = call["height"]!.GetValue<int>(),
            Width = call["width"]!.GetValue<int>(),
        };
        using var prompt = ConditionBatch.PromptStates(io["prompt_embeds"]);
        using var negative = ConditionBatch.PromptStates(io["negative_prompt_embeds"]);
        using var images = TextToImagePipeline.FromStates(model, options, prompt, negative, io["latents"], null, null, default);
        using var expected = io["decoded"].clamp(-1, 1);
        AssertClose(expected, images, $"{name}: images");
        foreach (var t in io.Values) t.Dispose();
    }

    [Fact]
    public void PromptsRunEndToEndSeededAndReproducibly()
    {
        using var model = StableDiffusionFormat.Load(Folder("sd2-tiny"), CPU);
        var options = new GenerationOptions { Sampler = "euler", Steps = 3, GuidanceScale = 5, Width = 48, Height = 40 };
        using var a = model.TextToImage(options, ["a red cat", "a dog"], [1, 2], ["blurry", ""]);
        using var b = model.TextToImage(options, ["a red cat", "a dog"], [1, 2], ["blurry", ""]);
        Assert.Equal([2, 3, 40, 48], a.shape);
        Assert.True(a.eq(b).all().item<bool>());
        using var alone = model.TextToImage(options, ["a dog"], [2], [""]);
        AssertClose(a.narrow(0, 1, 1), alone, "a row's image depends only on its prompt and seed");
    }

    [Fact]
    public void BadSizesAndOverlongPromptsAreExplained()
    {
        using var model = StableDiffusionFormat.Load(Folder("sd2-tiny"), CPU);
        var odd = Assert.Throws<ArgumentException>(() => model.TextToImage(new GenerationOptions { Width = 50, Steps = 1 }, ["x"], [1]));
        Assert.Contains("multiples of 8", odd.Message);
        var huge = Assert.Throws<ArgumentException>(() => model.TextToImage(new GenerationOptions { Width = 1 << 16, Height = 1 << 16, Steps = 1 }, ["x"], [1]));
        Assert.Contains("GiB", huge.Message);
        var warnings = new List<string>();
        using var image = model.TextToImage(new GenerationOptions { Sampler = "euler", Steps = 1 }, [string.Join(" ", Enumerable.Repeat("cat", 100))], [1],
            onWarning: warnings.Add);
        Assert.Single(warnings);
        Assert.Contains("dropped", warnings[0]);
    }

    [Fact]
    public void FoldersOfOtherFamiliesOrMissingPartsAreRefusedByName()
    {
        string root = Path.Combine(Path.GetTempPath(), "sd-bad-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            File.WriteAllText(Path.Combine(root, "model_index.json"), """{"_class_name": "StableDiffusionXLPipeline"}""");
            Assert.Contains("SDXL", Assert.Throws<NotSupportedException>(() => StableDiffusionFormat.Load(root, CPU)).Message);
            File.WriteAllText(Path.Combine(root, "model_index.json"), """{"_class_name": "StableDiffusionPipeline"}""");
            var missing = Assert.Throws<CheckpointFormatException>(() => StableDiffusionFormat.Load(root, CPU));
            Assert.Contains("unet/, vae/, text_encoder/, tokenizer/, scheduler/", missing.Message);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void MismatchedComponentsNaNWeightsAndMissingTokenizerFilesAreNamed()
    {
        string root = Path.Combine(Path.GetTempPath(), "sd-mismatch-" + Guid.NewGuid().ToString("N"));
        try
        {
            string Copy(string name)
            {
                string to = Path.Combine(root, name);
                foreach (var dir in Directory.GetDirectories(Folder("sd1-tiny"), "*", SearchOption.AllDirectories)) Directory.CreateDirectory(dir.Replace(Folder("sd1-tiny"), to));
                foreach (var file in Directory.GetFiles(Folder("sd1-tiny"), "*", SearchOption.AllDirectories)) File.Copy(file, file.Replace(Folder("sd1-tiny"), to));
                return to;
            }

            string width = Copy("width");
            string config = Path.Combine(width, "unet", "config.json");
            File.WriteAllText(config, File.ReadAllText(config).Replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 48"));
            var mismatch = Assert.Throws<CheckpointFormatException>(() => StableDiffusionFormat.Load(width, CPU));
            Assert.Contains("cross_attention_dim is 48 but the text encoder's hidden_size is 32", mismatch.Message);

            string kind = Copy("kind");
            string index = Path.Combine(kind, "model_index.json");
            File.WriteAllText(index, File.ReadAllText(index).Replace("\"AutoencoderKL\"", "\"VQModel\""));
            Assert.Contains("vae is a VQModel", Assert.Throws<CheckpointFormatException>(() => StableDiffusionFormat.Load(kind, CPU)).Message);

            string nan = Copy("nan");
            string weights = Path.Combine(nan, "vae", "diffusion_pytorch_model.safetensors");
            var tensors = SafeTensors.Read(File.ReadAllBytes(weights), weights);
            tensors["decoder.conv_out.bias"].fill_(float.NaN);
            File.WriteAllBytes(weights, SafeTensors.Write(tensors.Select(kv => (kv.Key, kv.Value))));
            var corrupt = Assert.Throws<CheckpointFormatException>(() => StableDiffusionFormat.Load(nan, CPU));
            Assert.Contains("decoder.conv_out.bias", corrupt.Message);
            Assert.Contains("NaN", corrupt.Message);

            string tokenizer = Copy("tokenizer");
            File.Delete(Path.Combine(tokenizer, "tokenizer", "merges.txt"));
            Assert.Contains("merges.txt", Assert.Throws<FileNotFoundException>(() => StableDiffusionFormat.Load(tokenizer, CPU)).Message);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double range = Math.Max(expected.abs().max().item<float>(), 1e-6);
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= 1e-4 * range, $"{what}: largest difference {error:G3} exceeds 1e-4 of the range {range:G3}.");
    }
}
