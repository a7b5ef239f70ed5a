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
/// Image-to-image and inpainting with latent models: image-to-image against diffusers v0.21.4's own
/// StableDiffusionImg2ImgPipeline on the tiny SD 1.x (PNDM) and SD 2.x (Euler, v) folders, fed the noise diffusers drew;
/// inpainting (no diffusers reference: its SD inpainting pipeline needs a 9-channel UNet) by its properties.
/// </summary>
public class LatentEditingPipelineTests
{
    private static string Pipeline(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "TestData", "StableDiffusion", "pipeline", .. parts]);

    [Theory]
    [InlineData("sd1-tiny")]
    [InlineData("sd2-tiny")]
    public void ImageToImageMatchesDiffusersGivenItsNoise(string name)
    {
        var io = SafeTensors.Read(File.ReadAllBytes(Pipeline(name, "img2img.safetensors")), name);
        var call = (JsonObject)JsonNode.Parse(File.ReadAllText(Pipeline("img2img.json")))!["pipelines"]![name]!["call"]!;
        using var model = StableDiffusionFormat.Load(Pipeline(name), CPU);
        var vae = model.Autoencoder!;

        // The encoder's sample with diffusers' noise, scaled.
        using (var distribution = vae.Encode(io["image"]))
        using (var sample = distribution.Sample(io["sample_noise"]))
        using (var latents = sample * vae.ScalingFactor)
            AssertClose(io["image_latents"], latents, $"{name}: image latents");

        var options = GenerationOptions.FromDiffusers(Pipeline(name)) with
        {
            Steps = call["num_inference_steps"]!.GetValue<int>(),
            GuidanceScale = call["guidance_scale"]!.GetValue<double>(),
        };
        double strength = call["strength"]!.GetValue<double>();
        using var prompt = ConditionBatch.PromptStates(io["prompt_embeds"]);
        using var negative = ConditionBatch.PromptStates(io["negative_prompt_embeds"]);
        using var images = LatentImageToImagePipeline.FromLatents(model, options, prompt, negative, io["image_latents"], io["noise"], strength, null, null, default);
        using var expected = io["decoded"].clamp(-1, 1);
        AssertClose(expected, images, $"{name}: images");
        foreach (var t in io.Values) t.Dispose();
    }

    [Fact]
    public void ImageToImageTakesAnySizeOfEightsAndIsSeededPerRow()
    {
        using var model = StableDiffusionFormat.Load(Pipeline("sd2-tiny"), CPU);
        var options = new GenerationOptions { Sampler = "euler", Steps = 4, GuidanceScale = 5 };
        using var input = Images(2, 40, 48, 3);
        using var a = model.ImageToImageWithPrompts(options, input, 0.5, ["a red cat", "a dog"], [1, 2], ["blurry", ""]);
        using var b = model.ImageToImageWithPrompts(options, input, 0.5, ["a red cat", "a dog"], [1, 2], ["blurry", ""]);
        Assert.Equal([2, 3, 40, 48], a.shape);
        Assert.True(a.eq(b).all().item<bool>());
        using var alone = model.ImageToImageWithPrompts(options, input.narrow(0, 1, 1), 0.5, ["a dog"], [2], [""]);
        AssertClose(a.narrow(0, 1, 1), alone, "a row's image depends only on its image, prompt and seed");
        using var otherPrompt = model.ImageToImageWithPrompts(options, input, 0.5, ["a blue house", "a dog"], [1, 2], ["blurry", ""]);
        Assert.True((otherPrompt.narrow(0, 0, 1) - a.narrow(0, 0, 1)).abs().max().item<float>() > 1e-3, "the prompt steers the image");
        using var kept = model.ImageToImageWithPrompts(options, input, 0.0, ["x", "y"], [1, 2]);
        Assert.True(kept.eq(input).all().item<bool>(), "strength 0 returns the images");

        // The unprompted overload is the empty prompt.
        var unguided = options with { GuidanceScale = 1 };
        using var plain = model.ImageToImage(unguided, input, 0.5, [1, 2]);
        using var empty = model.ImageToImageWithPrompts(unguided, input, 0.5, ["", ""], [1, 2]);
        Assert.True(plain.eq(empty).all().item<bool>());
    }

    [Fact]
    public void ImageToImageExplainsBadImages()
    {
        using var model = StableDiffusionFormat.Load(Pipeline("sd2-tiny"), CPU);
        var options = new GenerationOptions { Sampler = "euler", Steps = 2 };
        using var odd = Images(1, 40, 44, 1);
        Assert.Contains("multiples of 8", Assert.Throws<ArgumentException>(() => model.ImageToImageWithPrompts(options, odd, 0.5, ["x"], [1])).Message);
        using var grey = zeros(1, 1, 40, 48);
        Assert.Contains("(N, 3, H, W)", Assert.Throws<ArgumentException>(() => model.ImageToImageWithPrompts(options, grey, 0.5, ["x"], [1])).Message);
        using var ok = Images(1, 40, 48, 1);
        Assert.Contains("1 prompts for 2 seeds", Assert.Throws<ArgumentException>(() => model.ImageToImageWithPrompts(options, ok, 0.5, ["x"], [1, 2])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.ImageToImageWithPrompts(options, ok, 1.5, ["x"], [1]));
    }

    [Fact]
    public void InpaintingKeepsTheUnmaskedPixelsExactlyAndRedrawsTheRest()
    {
        using var model = StableDiffusionFormat.Load(Pipeline("sd2-tiny"), CPU);
        var options = new InpaintingOptions { Steps = 5, JumpLength = 2, Resamplings = 2, GuidanceScale = 4 };
        using var input = Images(2, 32, 40, 4);
        // A hole that does not follow the 8-pixel latent grid: rows 5–20, columns 9–30.
        using var mask = zeros(2, 1, 32, 40);
        mask[TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(5, 21), TensorIndex.Slice(9, 31)] = tensor(1f);
        var steps = new List<(int, int)>();
        using var a = model.InpaintWithPrompts(options, input, mask, ["a cat", "a dog"], [1, 2], ["", "blurry"], (d, t) => steps.Add((d, t)));
        Assert.Equal([2, 3, 32, 40], a.shape);
        Assert.Equal(steps[^1].Item2, steps[^1].Item1);
        Assert.True(steps.Count > 5, "RePaint goes back up and down again");
        using var keep = (mask == 0).expand(a.shape);
        Assert.True(a.masked_select(keep).eq(input.masked_select(keep)).all().item<bool>(), "outside the mask the output is the input, exactly");
        using var inside = (mask == 1).expand(a.shape);
        Assert.True((a.masked_select(inside) - input.masked_select(inside)).abs().mean().item<float>() > 1e-2, "inside the mask the image is redrawn");
        Assert.True(a.min().item<float>() >= -1 && a.max().item<float>() <= 1);

        using var b = model.InpaintWithPrompts(options, input, mask, ["a cat", "a dog"], [1, 2], ["", "blurry"]);
        Assert.True(a.eq(b).all().item<bool>(), "seeded: the same output again");
        using var otherPrompt = model.InpaintWithPrompts(options, input, mask, ["a blue house", "a dog"], [1, 2], ["", "blurry"]);
        Assert.True((otherPrompt.narrow(0, 0, 1) - a.narrow(0, 0, 1)).abs().max().item<float>() > 1e-3, "the prompt steers the redrawn region");
        using var otherSeed = model.InpaintWithPrompts(options, input, mask, ["a cat", "a dog"], [3, 2], ["", "blurry"]);
        Assert.True((otherSeed.narrow(0, 0, 1) - a.narrow(0, 0, 1)).abs().max().item<float>() > 1e-3, "the seed matters");
        Assert.True(otherSeed.narrow(0, 1, 1).eq(a.narrow(0, 1, 1)).all().item<bool>(), "and only for its own row");

        // Per-channel masks keep per channel; the unprompted overload runs too.
        using var red = zeros(2, 3, 32, 40);
        red[TensorIndex.Colon, 0, TensorIndex.Slice(0, 16)] = tensor(1f);
        using var c = model.Inpaint(options with { GuidanceScale = 1 }, input, red, [1, 2]);
        using var kept = (red == 0);
        Assert.True(c.masked_select(kept).eq(input.masked_select(kept)).all().item<bool>());
    }

    [Fact]
    public void InpaintingExplainsBadMasks()
    {
        using var model = StableDiffusionFormat.Load(Pipeline("sd2-tiny"), CPU);
        var options = new InpaintingOptions { Steps = 2, JumpLength = 1, Resamplings = 1 };
        using var input = Images(1, 32, 40, 5);
        using var small = zeros(1, 1, 16, 16);
        Assert.Contains("(1, 1 or 3, 32, 40)", Assert.Throws<ArgumentException>(() => model.InpaintWithPrompts(options, input, small, ["x"], [1])).Message);
        using var big = full(1, 1, 32, 40, 2f);
        Assert.Contains("[0, 1]", Assert.Throws<ArgumentException>(() => model.InpaintWithPrompts(options, input, big, ["x"], [1])).Message);
    }

    // Smooth seeded images in [−1, 1].
    private static Tensor Images(int n, int height, int width, long seed)
    {
        using var g = new Generator((ulong)seed);
        using var coarse = rand(n, 3, height / 8, width / 8, generator: g) * 2 - 1;
        return nn.functional.interpolate(coarse, [height, width], mode: InterpolationMode.Bilinear, align_corners: false).clamp(-1, 1);
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double range = Math.Max(expected.abs().max().item<float>(), 1e-6);
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= 1e-4 * range, $"{what}: largest difference {error:G3} exceeds 1e-4 of the range {range:G3}.");
    }
}
