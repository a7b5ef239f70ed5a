using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange.SingleFile;
using Microsoft.ML.Diffusion.Tests.Checkpoints;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Interchange.SingleFile;

/// <summary>
/// StableDiffusionFamily: SD 1.x and 2.x told apart and their layouts read from the real architectures' names and
/// shapes (architectures.json) and from the tiny fixture; other families refused naming them.
/// </summary>
public sealed class StableDiffusionFamilyTests
{
    private static readonly JsonObject Architectures = (JsonObject)JsonNode.Parse(File.ReadAllText(SafeTensorsFileTests.Fixture("architectures.json")))!;

    private static Dictionary<string, long[]> Architecture(string name) => LdmKeysTests.Shapes(Architectures[name]!.AsObject());

    private static readonly LdmVaeLayout SdVae = new(3, 3, [128, 256, 512, 512], 2, 4);

    [Fact]
    public void StableDiffusion15IsReadAsV1InferenceYamlDescribesIt()
    {
        var family = StableDiffusionFamily.Detect(Architecture("sd15"), "sd15");
        Assert.Equal(StableDiffusionVersion.StableDiffusion1, family.Version);
        Assert.Equal("Stable Diffusion 1.x", family.Name);
        Assert.Equal(LdmTextEncoderLayout.Clip, family.TextEncoder);
        var expected = new LdmUNetLayout(4, 4, [320, 640, 1280, 1280], 2, [true, true, true, false], [1, 1, 1, 1], 768, false, [8, 8, 8, 8], 1280, true) { ModelChannels = 320 };
        Assert.Equal(expected, family.UNet);
        Assert.Equal(["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], family.UNet.DownBlockTypes);
        Assert.Equal(["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], family.UNet.UpBlockTypes);
        Assert.Equal(40, family.UNet.HeadDim(0));
        Assert.Equal(SdVae, family.Vae);
        Assert.Equal((LdmPrediction.Epsilon, 512, false), (family.Prediction, family.ImageSize, family.UpcastAttention));
    }

    [Fact]
    public void StableDiffusion21IsVPredictionAt768UnlessItsGlobalStepSaysBase()
    {
        var shapes = Architecture("sd21");
        var family = StableDiffusionFamily.Detect(shapes, "sd21");
        Assert.Equal(StableDiffusionVersion.StableDiffusion2, family.Version);
        Assert.Equal(LdmTextEncoderLayout.OpenClip, family.TextEncoder);
        var expected = new LdmUNetLayout(4, 4, [320, 640, 1280, 1280], 2, [true, true, true, false], [1, 1, 1, 1], 1024, true, [5, 10, 20, 20], 1280, true) { ModelChannels = 320 };
        Assert.Equal(expected, family.UNet);
        Assert.Equal(64, family.UNet.HeadDim(3));
        Assert.Equal(SdVae, family.Vae);
        Assert.Equal((LdmPrediction.VPrediction, 768, false), (family.Prediction, family.ImageSize, family.UpcastAttention));

        var @base = StableDiffusionFamily.Detect(shapes, "sd2-base", globalStep: StableDiffusionFamily.StableDiffusion2BaseGlobalStep);
        Assert.Equal((LdmPrediction.Epsilon, 512, false), (@base.Prediction, @base.ImageSize, @base.UpcastAttention));
        var v21 = StableDiffusionFamily.Detect(shapes, "sd21", globalStep: StableDiffusionFamily.StableDiffusion21GlobalStep);
        Assert.Equal((LdmPrediction.VPrediction, 768, true), (v21.Prediction, v21.ImageSize, v21.UpcastAttention));
        var given = StableDiffusionFamily.Detect(shapes, "sd21", prediction: LdmPrediction.Epsilon);
        Assert.Equal(LdmPrediction.Epsilon, given.Prediction);

        // Without a text encoder the UNet's text-feature width tells the versions apart.
        var unetOnly = shapes.Where(kv => !kv.Key.StartsWith("cond_stage_model.", StringComparison.Ordinal)).ToDictionary();
        Assert.Equal(StableDiffusionVersion.StableDiffusion2, StableDiffusionFamily.Detect(unetOnly, "unet").Version);
        Assert.Equal(LdmTextEncoderLayout.None, StableDiffusionFamily.Detect(unetOnly, "unet").TextEncoder);
    }

    [Fact]
    public void TheTinyFixtureIsReadWithItsOwnShape()
    {
        using var file = SafeTensorsFile.Open(SafeTensorsFileTests.Fixture("model.safetensors"));
        var family = StableDiffusionFamily.Detect(file);
        Assert.Equal(StableDiffusionVersion.StableDiffusion1, family.Version);   // by its CLIP text encoder
        var unet = family.UNet;
        Assert.Equal((4, 4, 2, 8, false, 16, true, 4), (unet.InChannels, unet.OutChannels, unet.LayersPerBlock, unet.CrossAttentionDim, unet.UseLinearProjection, unet.TimeEmbeddingDim, unet.MidBlockAttention, unet.ModelChannels));
        Assert.Equal([4, 8, 8, 8], unet.BlockOutChannels);
        Assert.Equal([true, true, true, false], unet.CrossAttention);
        Assert.Equal(new LdmVaeLayout(3, 3, [4, 8, 8, 8], 2, 4), family.Vae);
    }

    private static void Refused(Dictionary<string, long[]> shapes, params string[] words)
    {
        var e = Assert.Throws<NotSupportedException>(() => StableDiffusionFamily.Detect(shapes, "'model.safetensors'"));
        foreach (string word in words) Assert.Contains(word, e.Message);
    }

    private static Dictionary<string, long[]> Keys(params string[] names) => names.ToDictionary(n => n, _ => new long[] { 4, 4 });

    [Fact]
    public void OtherFamiliesAreRefusedNamingThem()
    {
        var sd15 = Architecture("sd15");
        Refused(new(sd15) { ["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = [768], ["conditioner.embedders.1.model.ln_final.weight"] = [1280], ["model.diffusion_model.label_emb.0.0.weight"] = [1280, 2816] },
                "'model.safetensors' is a Stable Diffusion XL (base) checkpoint (conditioner.embedders), which is not supported yet");
        Refused(Keys("conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"), "Stable Diffusion XL refiner", "not supported yet");
        Refused(new(sd15) { ["model.diffusion_model.label_emb.0.0.weight"] = [1280, 1024] }, "label_emb", "Stable unCLIP");
        Refused(Keys("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "model.diffusion_model.x_embedder.proj.weight"), "Stable Diffusion 3", "not supported yet");
        Refused(Keys("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight"), "FLUX", "not supported yet");
        Refused(Keys("model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "model.diffusion_model.single_blocks.0.linear1.weight"), "FLUX");
        Refused(Keys("control_model.input_blocks.0.0.weight", "control_model.zero_convs.0.0.weight"), "ControlNet");
        Refused(Keys("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"), "LoRA");
        Refused(Keys("encoder.conv_in.weight", "quant_conv.weight", "decoder.conv_out.weight"), "autoencoder (VAE) alone");
        Refused(Keys("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"), "diffusers' names", "diffusers folder");
        Refused(new(sd15) { ["model.diffusion_model.input_blocks.0.0.weight"] = [320, 9, 3, 3] }, "an inpainting UNet (9 input channels", "not supported yet");
        Refused(new(sd15) { ["model.diffusion_model.input_blocks.0.0.weight"] = [320, 8, 3, 3] }, "InstructPix2Pix");
        Refused(new(sd15) { ["depth_model.model.pretrained.layer1.0.weight"] = [1] }, "depth-to-image");

        var e = Assert.Throws<CheckpointFormatException>(() => StableDiffusionFamily.Detect(Keys("weight", "bias"), "'w.safetensors'"));
        Assert.Contains("'w.safetensors' is not a Stable Diffusion checkpoint: it has no model.diffusion_model.* tensors", e.Message);
        var mixed = new Dictionary<string, long[]>(sd15) { ["cond_stage_model.model.ln_final.weight"] = [1024] };
        Assert.Contains("two text encoders", Assert.Throws<CheckpointFormatException>(() => StableDiffusionFamily.Detect(mixed, "m")).Message);
        var mismatched = new Dictionary<string, long[]>(sd15) { ["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = [49408, 1024] };
        Assert.Contains("text encoder of 1024 channels and a UNet that attends to 768", Assert.Throws<CheckpointFormatException>(() => StableDiffusionFamily.Detect(mismatched, "m")).Message);
    }
}
