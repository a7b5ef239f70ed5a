using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Xunit;
using static Microsoft.ML.Diffusion.Cli.Tests.CliRunner;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>import, export and generate --diffusers on a diffusers folder written by diffusers itself (the library's fixtures).</summary>
public sealed class DiffusersCommandsTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-cli-diffusers-").FullName;

    private string In(string name) => Path.Combine(_folder, name);

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", name);

    // A diffusers pipeline folder: the unet-attn fixture and the DDIM scheduler of ddim-leading.
    private string Pipeline()
    {
        string folder = In("pipeline");
        foreach (var (from, to) in new[] { ("unet-attn", "unet"), ("ddim-leading", "scheduler") })
        {
            Directory.CreateDirectory(Path.Combine(folder, to));
            foreach (string file in Directory.GetFiles(Fixture(from)).Where(f => f.EndsWith(".json") || f.EndsWith("model.safetensors")))
                File.Copy(file, Path.Combine(folder, to, Path.GetFileName(file)), overwrite: true);
        }
        return folder;
    }

    [Fact]
    public void ImportGenerateAndExportADiffusersFolder()
    {
        string pipeline = Pipeline(), zip = In("imported.zip");
        var import = Run("import", "--diffusers", pipeline, "--out", zip);
        Succeeded(import);
        Assert.Contains("UNet2DModel of 1×8×8 images", import.Output);
        Assert.Contains("sampler DDIM", import.Output);

        // The zip and the folder generate the same images with the folder's own scheduler (DDIM, steps_offset 1, no final ᾱ = 1).
        Succeeded(Run("generate", "--model", zip, "--sampler", "ddim", "--steps", "5", "--count", "3", "--out", In("from-zip.png")));
        Succeeded(Run("generate", "--diffusers", pipeline, "--steps", "5", "--count", "3", "--out", In("from-folder.png")));
        Assert.Equal(File.ReadAllBytes(In("from-zip.png")), File.ReadAllBytes(In("from-folder.png")));

        string exported = In("exported");
        var export = Run("export", "--model", zip, "--diffusers", exported);
        Succeeded(export);
        Assert.Contains("DDPMPipeline.from_pretrained", export.Output);
        Assert.True(File.Exists(Path.Combine(exported, "unet", "diffusion_pytorch_model.safetensors")));
        // The same tensors under the same names as the folder diffusers wrote.
        Dictionary<string, float[]> Weights(string folder)
        {
            string path = Path.Combine(folder, "unet", "diffusion_pytorch_model.safetensors");
            return Checkpoints.SafeTensors.Read(File.ReadAllBytes(path), path).ToDictionary(kv => kv.Key, kv => kv.Value.data<float>().ToArray());
        }
        var original = Weights(pipeline);
        var written = Weights(exported);
        Assert.Equal(original.Keys.Order(), written.Keys.Order());
        Assert.All(original, kv => Assert.Equal(kv.Value, written[kv.Key]));
        var ml = new MLContext();
        Assert.IsType<UNet2DModelNoisePredictor>(DiffusionTrainingTransformer.FindModel(ml.Model.Load(zip, out _)).Network);
    }

    [Fact]
    public void ExportKeepsTheImportedSchedulersClassAndSettings()
    {
        // A DDIM folder with trailing spacing, steps_offset 1 and set_alpha_to_one false, through import, a zip, and export.
        string pipeline = Pipeline(), zip = In("ddim.zip"), exported = In("ddim-exported");
        string config = Path.Combine(pipeline, "scheduler", "scheduler_config.json");
        File.WriteAllText(config, """
            {"_class_name": "DDIMScheduler", "_diffusers_version": "0.21.4", "beta_schedule": "squaredcos_cap_v2", "clip_sample": true,
             "prediction_type": "v_prediction", "set_alpha_to_one": false, "steps_offset": 1, "timestep_spacing": "trailing"}
            """);
        Succeeded(Run("import", "--diffusers", pipeline, "--out", zip));
        Succeeded(Run("export", "--model", zip, "--diffusers", exported));
        Assert.Equal(File.ReadAllText(config), File.ReadAllText(Path.Combine(exported, "scheduler", "scheduler_config.json")));
        Assert.Contains("\"DDIMScheduler\"", File.ReadAllText(Path.Combine(exported, "model_index.json")));

        // Fine-tuning keeps it too.
        string tuned = In("ddim-tuned.zip");
        Succeeded(Run("train", "--shapes", "--from", pipeline, "--steps", "1", "--batch", "4", "--out", tuned));
        Succeeded(Run("export", "--model", tuned, "--diffusers", In("ddim-tuned")));
        Assert.Equal(File.ReadAllText(config), File.ReadAllText(Path.Combine(In("ddim-tuned"), "scheduler", "scheduler_config.json")));
    }

    [Fact]
    public void AZipThatNamesAnUnregisteredSamplerSaysWhichRegistrationIsMissing()
    {
        // An imported zip (its last stage generates with DDIM) whose sampler is renamed to one no code registers.
        string zip = In("unregistered-sampler.zip");
        Succeeded(Run("import", "--diffusers", Pipeline(), "--out", zip));
        using (var archive = System.IO.Compression.ZipFile.Open(zip, System.IO.Compression.ZipArchiveMode.Update))
        {
            var entry = archive.Entries.Last(e => e.FullName.EndsWith("Settings.json", StringComparison.Ordinal));
            string json;
            using (var reader = new StreamReader(entry.Open())) json = reader.ReadToEnd();
            Assert.Contains("\"ddim\"", json);
            string name = entry.FullName;
            entry.Delete();
            using var writer = new StreamWriter(archive.CreateEntry(name).Open());
            writer.Write(json.Replace("\"ddim\"", "\"zzzz\""));
        }
        var info = Run("info", "--model", zip);
        Assert.Equal(ExitCodes.RuntimeError, info.ExitCode);
        Assert.Contains("not registered in this process", info.Output);
        Assert.Contains("No sampler is registered as 'zzzz'", info.Output);
        Assert.DoesNotContain("is not a diffusion model zip", info.Output);

        var e = Assert.ThrowsAny<Exception>(() => new MLContext().Model.Load(zip, out _));
        Assert.IsType<Samplers.UnknownSamplerException>(e.GetBaseException());
    }

    [Fact]
    public void TrainFromADiffusersFolderFineTunesItAndExportsTheResult()
    {
        string pipeline = Pipeline(), zip = In("tuned.zip");
        var training = Run("train", "--shapes", "--from", pipeline, "--steps", "2", "--batch", "8", "--out", zip);
        Succeeded(training);
        Assert.Contains($"Fine-tuning '{pipeline}' (diffusers-unet2d, 1×8×8)", training.Output);
        Assert.Contains("built-in shape images at 8×8", training.Output);
        Succeeded(Run("export", "--model", zip, "--diffusers", In("tuned")));
        Assert.True(File.Exists(Path.Combine(In("tuned"), "scheduler", "scheduler_config.json")));
    }

    [Fact]
    public void BadDiffusersInputIsNamed()
    {
        var missing = Run("import", "--diffusers", In("nowhere"), "--out", In("m.zip"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("does not exist", missing.Output);

        string pipeline = Pipeline();
        File.WriteAllText(Path.Combine(pipeline, "scheduler", "scheduler_config.json"), """{"_class_name": "UniPCMultistepScheduler"}""");
        var scheduler = Run("generate", "--diffusers", pipeline, "--out", In("g.png"));
        Assert.Equal(1, scheduler.ExitCode);
        Assert.Contains("UniPCMultistepScheduler", scheduler.Output);

        var both = Run("generate", "--diffusers", pipeline, "--model", In("m.zip"), "--out", In("g.png"));
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("only one of --model and --diffusers", both.Output);

        // A model trained with the default network (diffusers' UNet2DModel) has a diffusers form.
        string zip = In("trained.zip");
        Succeeded(Run(["train", "--shapes", .. TinyTraining(2), "--out", zip]));
        Succeeded(Run("export", "--model", zip, "--diffusers", In("exported")));
        Assert.True(File.Exists(Path.Combine(In("exported"), "model_index.json")));
    }

    [Fact]
    public void AnEmptyDiffusersFolderNamesEverythingItLacks()
    {
        string empty = In("empty");
        Directory.CreateDirectory(empty);
        var import = Run("import", "--diffusers", empty, "--out", In("m.zip"));
        Assert.True(import.ExitCode == 1, import.ToString());
        foreach (string lacking in new[] { "scheduler_config.json", "config.json (nor unet/config.json)", "diffusion_pytorch_model.safetensors" })
            Assert.Contains(lacking, import.Output);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
