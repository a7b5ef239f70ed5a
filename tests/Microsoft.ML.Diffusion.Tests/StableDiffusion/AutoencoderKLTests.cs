using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.StableDiffusion;

/// <summary>
/// diffusers' AutoencoderKL (Stable Diffusion's VAE): the folders diffusers v0.21.4 wrote (TestData/StableDiffusion/vae)
/// load and encode and decode as diffusers does. Errors are relative to the reference's largest magnitude.
/// </summary>
public sealed class AutoencoderKLTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-vae-").FullName;

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "StableDiffusion", "vae", name);

    private static Dictionary<string, Tensor> Io(string name) =>
        SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(name), "io.safetensors")), name);

    private static Dictionary<string, Tensor> Weights(string folder) =>
        SafeTensors.Read(File.ReadAllBytes(Path.Combine(folder, AutoencoderKLFolder.SafeTensorsFile)), folder);

    // Largest difference relative to the reference's largest magnitude; the absolute one is logged too.
    private double Compare(Tensor actual, Tensor expected, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double absolute = (actual - expected).abs().max().item<float>();
        double relative = absolute / expected.abs().max().item<float>();
        output.WriteLine($"{what}: largest difference {absolute:E2} ({relative:E2} of the largest value)");
        Assert.True(relative <= Tolerance, $"{what}: largest difference is {relative:E2} of the largest value");
        return relative;
    }

    // A copy of the tiny fixture to spoil.
    private string Copy(string name = "tiny")
    {
        string folder = Path.Combine(_folder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(Fixture(name))) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    private static void EditConfig(string folder, Func<string, string> edit)
    {
        string path = Path.Combine(folder, AutoencoderKLFolder.ConfigFile);
        string before = File.ReadAllText(path), after = edit(before);
        Assert.NotEqual(before, after);
        File.WriteAllText(path, after);
    }

    private static void EditWeights(string folder, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(folder, AutoencoderKLFolder.SafeTensorsFile);
        var weights = SafeTensors.Read(File.ReadAllBytes(path), path);
        edit(weights);
        File.WriteAllBytes(path, SafeTensors.Write(weights.Select(kv => (kv.Key, kv.Value))));
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("sd-blocks")]
    public void EncodingGivesDiffusersLatentDistribution(string name)
    {
        using var scope = NewDisposeScope();
        using var vae = AutoencoderKLFolder.Load(Fixture(name));
        var io = Io(name);
        using var noGrad = no_grad();
        using var posterior = vae.Encode(io["image"]);
        Compare(posterior.Mean, io["mean"], $"{name} mean");
        Compare(posterior.LogVar, io["logvar"], $"{name} logvar");
        Compare(posterior.Std, io["std"], $"{name} std");
        Assert.Equal(posterior.Mean.shape, posterior.Mode().shape);
        using var generator = new TorchSharp.torch.Generator((ulong)io["sample_seed"].item<long>(), CPU);
        Compare(posterior.Sample(generator), io["sample"], $"{name} sample with diffusers' seed");
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("sd-blocks")]
    public void DecodingGivesDiffusersImages(string name)
    {
        using var scope = NewDisposeScope();
        using var vae = AutoencoderKLFolder.Load(Fixture(name));
        var io = Io(name);
        using var noGrad = no_grad();
        Compare(vae.Decode(io["latents"]), io["decoded"], $"{name} decode");
        Compare(vae.forward(io["image"]), io["reconstruction"], $"{name} decode of the mode");
    }

    [Fact]
    public void TheDistributionClampsTheLogVarianceAsDiffusersDoes()
    {
        using var scope = NewDisposeScope();
        // Channels 0–1 are the mean, 2–3 the log-variance: one below −30, one above 20.
        var moments = tensor(new float[] { 0.5f, -1f, -50f, 40f }).view(1, 4, 1, 1);
        using var posterior = new DiagonalGaussianDistribution(moments);
        Assert.Equal(new[] { 0.5f, -1f }, posterior.Mean.data<float>().ToArray());
        Assert.Equal(new[] { -30f, 20f }, posterior.LogVar.data<float>().ToArray());
        Assert.Equal(new[] { MathF.Exp(-15f), MathF.Exp(10f) }, posterior.Std.data<float>().ToArray());
        var noise = tensor(new float[] { 2f, 1f }).view(1, 2, 1, 1);
        Assert.Equal(new[] { 0.5f + 2 * MathF.Exp(-15f), -1f + MathF.Exp(10f) }, posterior.Sample(noise).data<float>().ToArray());
        Assert.Equal(new[] { 0.5f, -1f }, posterior.Mode().data<float>().ToArray());
        Assert.Throws<ArgumentException>(() => new DiagonalGaussianDistribution(zeros(1, 3, 1, 1)));
    }

    [Fact]
    public void WeightsWithTheAttentionNamesOfDiffusersBefore014Load()
    {
        using var scope = NewDisposeScope();
        var weights = Weights(Fixture("tiny"));
        var old = new Dictionary<string, Tensor>();
        foreach (var (key, value) in weights)
            old[key.Replace(".to_q.", ".query.").Replace(".to_k.", ".key.").Replace(".to_v.", ".value.").Replace(".to_out.0.", ".proj_attn.")] = value;
        Assert.Contains("encoder.mid_block.attentions.0.proj_attn.weight", old.Keys);
        Assert.Contains("decoder.mid_block.attentions.0.query.bias", old.Keys);
        Assert.DoesNotContain(old.Keys, k => k.Contains(".to_"));

        string folder = Copy();
        File.WriteAllBytes(Path.Combine(folder, AutoencoderKLFolder.SafeTensorsFile), SafeTensors.Write(old.Select(kv => (kv.Key, kv.Value))));
        using var vae = AutoencoderKLFolder.Load(folder);
        var io = Io("tiny");
        using var noGrad = no_grad();
        Compare(vae.Decode(io["latents"]), io["decoded"], "decode with the old names");
    }

    [Fact]
    public void DeprecatedNamesAreRenamedOnlyWhereTheNetworkHasTheNewNameAndTheFileDoesNot()
    {
        using var scope = NewDisposeScope();
        var network = new HashSet<string> { "a.attentions.0.to_q.weight", "a.attentions.0.to_out.0.bias", "b.to_k.weight" };
        var t = zeros(1);
        var weights = new Dictionary<string, Tensor>
        {
            ["a.attentions.0.query.weight"] = t,       // renamed
            ["a.attentions.0.proj_attn.bias"] = t,     // renamed
            ["b.key.weight"] = t,                      // kept: the file has the new name too
            ["b.to_k.weight"] = t,
            ["c.value.weight"] = t,                    // kept: the network has no c.to_v.weight
        };
        var renamed = DeprecatedAttentionNames.Rename(weights, network);
        Assert.Equal(
            new[] { "a.attentions.0.to_out.0.bias", "a.attentions.0.to_q.weight", "b.key.weight", "b.to_k.weight", "c.value.weight" },
            renamed.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void AMissingOrExtraTensorFailsNamingIt()
    {
        string lacking = Copy();
        EditWeights(lacking, w => w.Remove("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"));
        var missing = Assert.Throws<CheckpointFormatException>(() => AutoencoderKLFolder.Load(lacking));
        Assert.Contains("lacks decoder.up_blocks.1.resnets.0.conv_shortcut.weight", missing.Message);
        Assert.Contains(AutoencoderKLFolder.SafeTensorsFile, missing.Message);

        string extra = Copy();
        EditWeights(extra, w => w["encoder.mid_block.attentions.0.to_out.1.weight"] = zeros(3));
        Assert.Contains("encoder.mid_block.attentions.0.to_out.1.weight", Assert.Throws<CheckpointFormatException>(() => AutoencoderKLFolder.Load(extra)).Message);

        string shape = Copy();
        EditWeights(shape, w => w["quant_conv.weight"] = zeros(8, 8, 3, 3));
        Assert.Contains("'quant_conv.weight' has shape [8, 8, 3, 3] but the network expects [8, 8, 1, 1]",
            Assert.Throws<CheckpointFormatException>(() => AutoencoderKLFolder.Load(shape)).Message);

        string noWeights = Copy();
        File.Delete(Path.Combine(noWeights, AutoencoderKLFolder.SafeTensorsFile));
        Assert.Contains("has neither diffusion_pytorch_model.safetensors nor diffusion_pytorch_model.bin", Assert.Throws<FileNotFoundException>(() => AutoencoderKLFolder.Load(noWeights)).Message);
    }

    [Theory]
    [InlineData("\"DownEncoderBlock2D\",", "\"AttnDownEncoderBlock2D\",", "down_block_types", "AttnDownEncoderBlock2D")]
    [InlineData("\"UpDecoderBlock2D\"\n", "\"AttnUpDecoderBlock2D\"\n", "up_block_types", "AttnUpDecoderBlock2D")]
    [InlineData("\"act_fn\": \"silu\"", "\"act_fn\": \"tanh\"", "act_fn", "tanh")]
    [InlineData("\"norm_num_groups\": 32", "\"norm_num_groups\": 24", "norm_num_groups", "24")]
    [InlineData("\"act_fn\"", "\"norm_type\": \"spatial\", \"act_fn\"", "norm_type", "spatial")]
    [InlineData("\"act_fn\"", "\"use_quant_conv\": false, \"act_fn\"", "use_quant_conv", "false")]
    [InlineData("\"AutoencoderKL\"", "\"AsymmetricAutoencoderKL\"", "AsymmetricAutoencoderKL", "only AutoencoderKL")]
    [InlineData("\"latent_channels\": 4", "\"latent_channels\": \"4\"", "latent_channels", "whole number")]
    public void AConfigurationThisLibraryCannotBuildFailsNamingTheFieldAndValue(string from, string to, string field, string value)
    {
        string folder = Copy();
        EditConfig(folder, c => c.Replace("\r\n", "\n").Replace(from, to));
        var error = Assert.Throws<CheckpointFormatException>(() => AutoencoderKLFolder.Load(folder));
        Assert.Contains(field, error.Message);
        Assert.Contains(value, error.Message);
        Assert.Contains(AutoencoderKLFolder.ConfigFile, error.Message);
    }

    [Fact]
    public void ConfigsOfReleasedVaesReadWithDiffusersDefaults()
    {
        // runwayml/stable-diffusion-v1-5's vae/config.json (written by diffusers 0.6, before scaling_factor existed).
        const string sd15 = """
            {"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
             "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
             "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
             "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
            """;
        var config = AutoencoderKLConfig.Read(sd15, "sd15");
        Assert.Equal(0.18215, config.ScalingFactor);
        Assert.True(config.ForceUpcast);
        Assert.Equal(8, config.DownscaleFactor);
        Assert.Equal(AutoencoderKLConfig.StableDiffusion.Write(), config.Write());

        // A file of a later diffusers (SDXL's VAE as re-saved), with the fields v0.21 did not have at their neutral values.
        string sdxl = sd15.Replace("\"0.6.0\"", "\"0.30.0\"").Replace("\"sample_size\": 512", "\"sample_size\": [1024, 1024], \"scaling_factor\": 0.13025, "
            + "\"force_upcast\": false, \"shift_factor\": null, \"latents_mean\": null, \"latents_std\": null, \"use_quant_conv\": true, "
            + "\"use_post_quant_conv\": true, \"mid_block_add_attention\": true, \"_name_or_path\": \"x\"");
        var later = AutoencoderKLConfig.Read(sdxl, "sdxl");
        Assert.Equal(0.13025, later.ScalingFactor);
        Assert.False(later.ForceUpcast);
        Assert.Equal(1024, later.SampleSize);

        var roundTrip = AutoencoderKLConfig.Read(later.Write(), "written");
        Assert.Equal(later.Write(), roundTrip.Write());
    }

    [Fact]
    public void StableDiffusionsVaeHasItsParameterCountAndDiffusersNames()
    {
        using var vae = new AutoencoderKL(AutoencoderKLConfig.StableDiffusion);
        Assert.Equal(83_653_863, vae.parameters().Sum(p => p.numel()));
        var names = vae.state_dict().Keys.ToHashSet();
        Assert.Contains("encoder.down_blocks.0.downsamplers.0.conv.weight", names);
        Assert.Contains("encoder.mid_block.attentions.0.group_norm.weight", names);
        Assert.Contains("decoder.up_blocks.3.resnets.2.norm2.bias", names);
        Assert.Contains("decoder.up_blocks.2.upsamplers.0.conv.weight", names);
        Assert.Contains("post_quant_conv.bias", names);
        Assert.DoesNotContain(names, n => n.Contains("time_emb_proj"));
        Assert.Equal(0.18215, vae.ScalingFactor);
    }

    // Decodes Stable Diffusion's 64×64 latents (a 512×512 image) with random weights on the CPU and logs the time;
    // set MLDIFFUSION_VAE_TIMING=1 to run it (a few seconds to minutes, about 2 GB of memory).
    [SkippableFact]
    public void StableDiffusionsVaeDecodesA512ImageOnTheCpu()
    {
        Skip.If(Environment.GetEnvironmentVariable("MLDIFFUSION_VAE_TIMING") != "1", "Set MLDIFFUSION_VAE_TIMING=1 to time the Stable Diffusion VAE's decoding.");
        using var scope = NewDisposeScope();
        manual_seed(0);
        using var vae = new AutoencoderKL(AutoencoderKLConfig.StableDiffusion);
        vae.eval();
        using var noGrad = no_grad();
        var latents = randn(1, 4, 64, 64);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var image = vae.Decode(latents);
        output.WriteLine($"decode of 1×4×64×64 on the CPU ({get_num_threads()} threads): {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(new long[] { 1, 3, 512, 512 }, image.shape);
        Assert.True(image.isfinite().all().item<bool>());
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
