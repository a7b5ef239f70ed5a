using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using TorchSharp;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>Older diffusers folders hold diffusion_pytorch_model.bin (a PyTorch pickle) instead of safetensors; the UNet and the VAE read both to the same weights.</summary>
public class PickleWeightFilesTests
{
    private static string Fixture(string kind, string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", kind, name);

    [Fact]
    public void TheUNetReadsAPickleFolderAsItsSafetensorsTwin()
    {
        using var fromPickle = UNet2DConditionModel.FromPretrained(Fixture("unet", "sd-variants-bin"));
        using var fromSafetensors = UNet2DConditionModel.FromPretrained(Fixture("unet", "sd-variants"));
        AssertSameState(fromSafetensors, fromPickle);
    }

    [Fact]
    public void TheAutoencoderReadsAPickleFolderAsItsSafetensorsTwin()
    {
        using var fromPickle = AutoencoderKLFolder.Load(Fixture("vae", "sd-blocks-bin"));
        using var fromSafetensors = AutoencoderKLFolder.Load(Fixture("vae", "sd-blocks"));
        AssertSameState(fromSafetensors, fromPickle);
    }

    private static void AssertSameState(torch.nn.Module expected, torch.nn.Module actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, tensor) in a)
            Assert.True(tensor.equal(b[name]).all().item<bool>(), $"'{name}' differs between the .bin and the .safetensors folder.");
    }
}
