using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers pipeline folder (<c>model_index.json</c>, <c>unet/</c>, <c>scheduler/</c>) read into a
/// <see cref="DiffusionModel"/> and written from one; see <see cref="DiffusersFormat.Load"/> and
/// <see cref="DiffusersFormat.SaveDiffusers"/>. A text- or vector-conditional model has no diffusers pipeline: its
/// folder has no model_index.json, and its condition encoder is beside the UNet (<see cref="ConditionEncoderFolder"/>).
/// </summary>
internal static class DiffusersPipelineFolder
{
    public static DiffusionModel Load(string folder, Device? device)
    {
        DiffusionDevice.EnsureInitialized();
        DiffusersModelFolder.ThrowIfIncomplete(folder);
        var (schedulerPath, scheduler) = DiffusersSchedulerConfig.ReadFolder(folder);
        NoisePredictor network = ConditionEncoderFolder.IsIn(folder)
            ? ConditionEncoderFolder.Load(folder)
            : DiffusersUNetFolder.Load(DiffusersModelFolder.UNetFolder(folder));
        network.to(device ?? DiffusionDevice.Resolve());
        return new DiffusionModel(network, scheduler.Schedule, scheduler.Options.Prediction)
        {
            DiffusersScheduler = File.ReadAllText(schedulerPath),
            Source = SourceOf(folder),
        };
    }

    // The folder a model's weights are in, by path and checksum: the base model zips name for LoRA adapters fused later.
    private static ModelSource SourceOf(string folder)
    {
        string full = Path.GetFullPath(folder);
        return new ModelSource(ModelSource.DiffusersModel, full, Sha256: FileChecksum.Sha256(full, DiffusersModelFolder.WeightFiles(full)));
    }

    public static void Save(DiffusionModel model, string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (model.TakesPrompts)
        {
            StableDiffusionPipelineWriter.Save(model, folder);
            return;
        }
        if (model.Network is UNet2DConditionNoisePredictor { ConditionEncoder: not null } conditional && model.NetworkOptions is UNet2DConditionOptions encoded)
        {
            var (conditionalScheduler, _) = SchedulerToWrite(model);   // fails before anything is written
            ConditionEncoderFolder.Save(conditional, encoded, folder);
            Directory.CreateDirectory(Path.Combine(folder, "scheduler"));
            AtomicFile.Write(Path.Combine(folder, "scheduler", DiffusersSchedulerConfig.FileName), s => s.Write(System.Text.Encoding.UTF8.GetBytes(conditionalScheduler)));
            if (model.FusedAdapters == 0) model.Source = SourceOf(folder);
            return;
        }
        UNet2DModelOptions unet;
        byte[] weights;
        var format = new Dictionary<string, string> { ["format"] = "pt" };
        if (model.Network is Networks.Legacy.UNetNoisePredictor legacy)
        {
            // Files of the first UNet that a diffusers network computes load as one; the others have no diffusers form.
            throw new NotSupportedException($"This model's network, the library's first UNet, cannot be written as a diffusers folder: {Networks.Legacy.FirstUNetFiles.WhyNoDiffusersForm(legacy.Options)}. It still generates here; train a new model with the default network to export.");
        }
        if (model.Network is UNet2DModelNoisePredictor && model.NetworkOptions is UNet2DModelOptions options)
        {
            unet = options;
            weights = SafeTensors.Write(model.Network.state_dict().Select(kv => (kv.Key, kv.Value)), format);
        }
        else
        {
            throw new NotSupportedException($"Only diffusers' UNet2DModel and a text- or vector-conditional UNet2DConditionModel trained here can be written as a diffusers folder; this model's network is {NoisePredictors.NameOf(model.NetworkOptions.GetType())}. Train with the default network or Network = new UNet2DModelOptions {{ … }} to export.");
        }
        var (scheduler, schedulerClass) = SchedulerToWrite(model);   // fails before anything is written
        string config = UNet2DModelConfig.Write(unet);
        string index = $$"""
            {
              "_class_name": "DDPMPipeline",
              "_diffusers_version": "{{UNet2DModelConfig.DiffusersVersion}}",
              "scheduler": ["diffusers", "{{schedulerClass}}"],
              "unet": ["diffusers", "UNet2DModel"]
            }

            """;
        Directory.CreateDirectory(Path.Combine(folder, "unet"));
        Directory.CreateDirectory(Path.Combine(folder, "scheduler"));
        AtomicFile.Write(Path.Combine(folder, "unet", DiffusersUNetFolder.SafeTensorsFile), s => s.Write(weights));
        AtomicFile.Write(Path.Combine(folder, "unet", DiffusersUNetFolder.ConfigFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(config)));
        AtomicFile.Write(Path.Combine(folder, "scheduler", DiffusersSchedulerConfig.FileName), s => s.Write(System.Text.Encoding.UTF8.GetBytes(scheduler)));
        AtomicFile.Write(Path.Combine(folder, "model_index.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(index)));
        // With no LoRA fused the folder holds the model's own weights: zips of it with adapters fused later refer to it.
        if (model.FusedAdapters == 0) model.Source = SourceOf(folder);
    }

    // The imported scheduler when it still describes the model's schedule and prediction; otherwise a DDPMScheduler.
    internal static (string Json, string ClassName) SchedulerToWrite(DiffusionModel model)
    {
        if (model.DiffusersScheduler is { } kept)
        {
            var mapping = DiffusersSchedulerConfig.Read(kept, "the model's diffusers scheduler");
            if (mapping.Schedule == model.ScheduleOptions && mapping.Options.Prediction == model.Prediction)
                return (kept, mapping.ClassName);
        }
        return (DiffusersSchedulerConfig.Write(model.ScheduleOptions, model.Prediction), "DDPMScheduler");
    }
}
