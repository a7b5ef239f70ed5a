using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Interchange.SingleFile;
using Microsoft.ML.Diffusion.Tests.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Interchange.SingleFile;

/// <summary>
/// The ldm → diffusers renaming on files diffusers v0.21.4's own converters made (TestData/StableDiffusion/single-file,
/// make_single_file_fixtures.py): the single file maps onto exactly the diffusers tensors, every key used, and every
/// name agrees with what diffusers' convert_from_ckpt.py gives — on a tiny SD-structured model with weights, and on
/// the full SD 1.5 and SD 2.1 architectures' names and shapes.
/// </summary>
public sealed class LdmKeysTests
{
    private static string Fixture(string name) => SafeTensorsFileTests.Fixture(name);

    private static JsonObject Json(string name) => (JsonObject)JsonNode.Parse(File.ReadAllText(Fixture(name)))!;

    // Each key of the file under its component's diffusers / transformers name.
    private static Dictionary<string, (string Target, LdmComponent Component)> Map(IEnumerable<string> keys, StableDiffusionFamily family, string source)
    {
        var unet = LdmUNetKeys.Renamer(family.UNet, source);
        var vae = LdmVaeKeys.Renamer(family.Vae!, source);
        var text = LdmClipTextKeys.Renamer(keepPositionIds: true);
        var result = new Dictionary<string, (string, LdmComponent)>(StringComparer.Ordinal);
        foreach (string key in keys)
        {
            var component = StableDiffusionFamily.Component(key);
            string? target = component switch
            {
                LdmComponent.UNet => unet(key[LdmUNetKeys.Prefix.Length..]),
                LdmComponent.Vae => vae(key[LdmVaeKeys.Prefix.Length..]),
                LdmComponent.TextEncoder when family.TextEncoder == LdmTextEncoderLayout.Clip => text(key[LdmClipTextKeys.Prefix.Length..]),
                LdmComponent.TextEncoder => null,   // OpenCLIP: OpenClipTextKeys's
                _ => throw new Xunit.Sdk.XunitException($"{key} is {component}"),
            };
            if (target is not null) result[key] = (target, component);
        }
        return result;
    }

    [Fact]
    public void TheTinySingleFileMapsOntoExactlyTheDiffusersTensors()
    {
        using var scope = NewDisposeScope();
        using var single = SafeTensorsFile.Open(Fixture("model.safetensors"));
        var family = StableDiffusionFamily.Detect(single);
        var mapped = Map(single.Names, family, single.Source);
        Assert.Equal(single.Names.Count, mapped.Count);   // every key used

        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (component, file) in new[] { (LdmComponent.UNet, "unet.safetensors"), (LdmComponent.Vae, "vae.safetensors"), (LdmComponent.TextEncoder, "text_encoder.safetensors") })
        {
            using var expected = SafeTensorsFile.Open(Fixture(file));
            var ours = mapped.Where(kv => kv.Value.Component == component).ToDictionary(kv => kv.Value.Target, kv => kv.Key);
            Assert.Equal(mapped.Count(kv => kv.Value.Component == component), ours.Count);   // no two keys onto one name
            Assert.Equal(expected.Names.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));   // none missing, none left over
            foreach (string name in expected.Names)
            {
                var want = expected.Read(name);
                var got = single.Read(ours[name]);
                if (component == LdmComponent.Vae && LdmVaeKeys.IsConvolutionAsLinear(name))
                {
                    Assert.Equal([.. want.shape, 1, 1], got.shape);   // the original layout's 1×1 convolution
                    got = got.view(want.shape);
                }
                Assert.True(SafeTensorsFileTests.Same(want, got), $"{file}: {name} from {ours[name]}");
                used.Add(ours[name]);
            }
        }
        Assert.Equal(single.Names.Count, used.Count);
    }

    [Fact]
    public void EveryNameAgreesWithDiffusersConvertFromCkpt()
    {
        var json = Json("single_file.json");
        using var single = SafeTensorsFile.Open(Fixture("model.safetensors"));
        var family = StableDiffusionFamily.Detect(single);
        AgreesWithDiffusers(json, Map(single.Names, family, single.Source));

        var architectures = Json("architectures.json");
        foreach (string name in new[] { "sd15", "sd21" })
        {
            var architecture = architectures[name]!.AsObject();
            var shapes = Shapes(architecture);
            var detected = StableDiffusionFamily.Detect(shapes, name);
            AgreesWithDiffusers(architecture, Map(shapes.Keys, detected, name));
        }
    }

    private static void AgreesWithDiffusers(JsonObject json, Dictionary<string, (string Target, LdmComponent Component)> ours)
    {
        foreach (var (field, component) in new[] { ("convert_from_ckpt_unet", LdmComponent.UNet), ("convert_from_ckpt_vae", LdmComponent.Vae) })
        {
            var diffusers = json[field]!.AsObject().ToDictionary(kv => kv.Key, kv => (string)kv.Value!);
            var mine = ours.Where(kv => kv.Value.Component == component).ToDictionary(kv => kv.Key, kv => kv.Value.Target);
            Assert.Equal(diffusers.Count, mine.Count);
            foreach (var (key, name) in diffusers) Assert.Equal((key, name), (key, mine[key]));
        }
    }

    internal static Dictionary<string, long[]> Shapes(JsonObject architecture) =>
        architecture["shapes"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.AsArray().Select(d => (long)d!).ToArray(), StringComparer.Ordinal);

    [Fact]
    public void NamesThatAreNoPartOfTheNetworkAreErrorsNotDropped()
    {
        var shapes = Shapes(Json("architectures.json")["sd15"]!.AsObject());
        var family = StableDiffusionFamily.Detect(shapes, "sd15");
        var unet = LdmUNetKeys.Renamer(family.UNet, "'x.safetensors'");
        var e = Assert.Throws<CheckpointFormatException>(() => unet("input_blocks.1.2.extra.weight"));
        Assert.Contains("'x.safetensors' has model.diffusion_model.input_blocks.1.2.extra.weight, which is no part of a Stable Diffusion UNet", e.Message);
        Assert.Throws<CheckpointFormatException>(() => unet("middle_block.3.in_layers.0.weight"));
        Assert.Throws<CheckpointFormatException>(() => unet("input_blocks.3.0.in_layers.0.weight"));   // the downsampler's slot holds only op
        var vae = LdmVaeKeys.Renamer(family.Vae!, "v");
        Assert.Null(vae("loss.discriminator.main.0.weight"));
        Assert.Throws<CheckpointFormatException>(() => vae("decoder.up.0.upsample.conv.weight"));   // the top level has no upsampler
        Assert.Throws<CheckpointFormatException>(() => vae("encoder.down.3.downsample.conv.weight"));   // nor the bottom a downsampler
        Assert.Equal("decoder.up_blocks.3.resnets.2.conv_shortcut.bias", LdmVaeKeys.ToDiffusers("decoder.up.0.block.2.nin_shortcut.bias", 4));
        var text = LdmClipTextKeys.Renamer(keepPositionIds: false);
        Assert.Null(text("text_model.embeddings.position_ids"));
        Assert.Equal("text_model.encoder.layers.0.mlp.fc1.weight", text("encoder.layers.0.mlp.fc1.weight"));   // before text_model existed
        Assert.Equal(LdmComponent.NotWeights, StableDiffusionFamily.Component("alphas_cumprod"));
        Assert.Equal(LdmComponent.NotWeights, StableDiffusionFamily.Component("model_ema.diffusion_modelinput_blocks00weight"));
        Assert.Equal(LdmComponent.Unknown, StableDiffusionFamily.Component("something_else.weight"));
    }
}
