using System.Diagnostics;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// The cost on the CPU of one training step of Stable Diffusion 1.5's UNet (random weights, full size) at batch 1: LoRA
/// adapters of the attention projections, or the whole UNet. Each step is the library's own <see cref="DiffusionTrainer.TrainStep"/>
/// of the trainer <c>TrainDiffusion</c> builds for a Stable Diffusion model (<c>DiffusionTrainer(startFrom, lora, options)</c>
/// for LoRA: base frozen, only the adapters in AdamW; the in-place trainer for the whole UNet: every parameter in AdamW),
/// on random latents 1×4×(size/8)×(size/8) and one caption's text states: a timestep, noise, forward, MSE loss,
/// backward, gradient clipping, AdamW. The frozen CLIP text encoder is resident (its weights count in the memory) and
/// encodes the caption once, as <see cref="LatentTrainingSet"/> keeps each caption's states; its forward is timed on its own.
/// The VAE is not built: training encodes each image once, before the steps. One configuration per process, so the peak
/// RSS (VmHWM) is that configuration's.
/// </summary>
internal static class LoraCost
{
    public static readonly string[] Modes = ["lora", "full"];
    public static readonly string[] ImageSizes = ["256", "512"];

    /// <summary>The configurations of <c>--lora-cost-all</c>, cheapest first.</summary>
    public static readonly (string Mode, int Size)[] All = [("lora", 256), ("full", 256), ("lora", 512), ("full", 512)];

    public const string JsonFile = "lora-cost.json";   // one JSON object a line, appended
    public const string MarkdownFile = "lora-cost.md";

    private static readonly JsonSerializerOptions Line = new(Json.Options) { WriteIndented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>One configuration's measurement; Status is "ok", or what stopped it (then the times are missing).</summary>
    internal sealed record Result(string Configuration, string Mode, int ImageSize, string SdSize, int? Rank, string Status,
        int Threads, long Parameters, long TrainableParameters, int? AdaptedLayers, int WarmupSteps, double[] Seconds,
        double? MedianSeconds, double? MedianCpuSeconds, double? RssBeforeTrainingMb, double PeakRssMb, long? AdapterFileBytes, string? AdapterFile,
        string TextEncoder, double? TextEncodeSeconds, string Step, string Timestamp);

    public static string Name(string mode, int size) => $"{mode}-{size}";

    /// <summary>Measures one configuration, prints its JSON line, appends it to OUT/lora-cost.json and rewrites OUT/lora-cost.md.</summary>
    public static int Run(BenchmarkOptions o, Action<string> log)
    {
        var r = Measure(o.LoraCostMode, o.LoraCostSize, o.SdSize == "tiny", o.LoraRank, o.LoraCostWarmup, o.Repeats, o.OutputDirectory, log);
        Console.WriteLine(JsonSerializer.Serialize(r, Line));
        Append(o.OutputDirectory, r);
        WriteMarkdown(o.OutputDirectory);
        return 0;
    }

    private static Result Measure(string mode, int size, bool tiny, int rank, int warmup, int repeats, string outDir, Action<string> log)
    {
        if (size % VaeFactor != 0) throw new ArgumentException($"--lora-cost-size must be a multiple of {VaeFactor}, not {size}.");
        bool lora = mode == "lora";
        string name = Name(mode, size);
        string sdSize = tiny ? "tiny" : "sd15";
        manual_seed(0);
        var build = Stopwatch.StartNew();
        var unetConfig = SdComponents.UnetConfig(tiny);
        var textConfig = SdComponents.TextConfig(tiny);
        using var clip = new ClipTextModel(textConfig);
        clip.eval();
        var networkOptions = UNet2DConditionOptions.From(unetConfig.ToJson(), unetConfig, textConfig.MaxPositionEmbeddings);
        using var model = new DiffusionModel(new UNet2DConditionNoisePredictor(networkOptions, new UNet2DConditionModel(unetConfig)),
            Sd15Schedule, PredictionType.Epsilon);
        long parameters = model.Network.parameters().Sum(p => p.numel());
        log($"[lora-cost] {name} ({sdSize}): UNet of {parameters:N0} parameters and text encoder built in {build.Elapsed.TotalSeconds:F1} s");

        // One caption's states, computed once and kept (LatentTrainingSet); the encoder's forward is timed apart from the step.
        using var ids = randint(0, textConfig.VocabSize, [1, textConfig.MaxPositionEmbeddings], dtype: int64);
        Tensor states = null!;
        var encodeTimes = new List<double>();
        for (int i = 0; i < 4; i++)   // one warm-up, then three
        {
            using var noGrad = no_grad();
            states?.Dispose();
            var clock = Stopwatch.StartNew();
            states = clip.forward(ids).DetachFromDisposeScope();
            if (i > 0) encodeTimes.Add(clock.Elapsed.TotalSeconds);
        }
        using var condition = ConditionBatch.PromptStates(states);
        states.Dispose();
        double textSeconds = TimingStats.From(encodeTimes).MedianS;

        // TrainDiffusion's settings for a Stable Diffusion UNet (no EMA), as plain MSE at a constant rate (neither changes the cost).
        var trainerOptions = new DiffusionTrainerOptions
        {
            BatchSize = 1, LearningRate = 1e-4, WarmupSteps = 0, EmaDecay = 0, GradientClipNorm = 1.0, Seed = 1,
            Prediction = model.Prediction, ConditionDropout = 0,
        };
        using var trainer = lora
            ? new DiffusionTrainer(model, new LoraTrainingOptions { Rank = rank }, trainerOptions)
            : new DiffusionTrainer(model.Network, model.ScheduleOptions, trainerOptions, model.Device);
        long trainable = trainer.TrainedModule.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        int? adapted = lora ? ((LoraNetwork)trainer.TrainedModule).Names.Count : null;
        ProcessMemory.CollectGarbage();
        double before = ProcessMemory.ResidentMiB();
        log($"[lora-cost] {name}: {trainable:N0} trainable parameters{(lora ? $" in {adapted} rank-{rank} adapters" : "")}; RSS before training {before / 1024:F2} GiB");

        int side = size / VaeFactor;
        using var latentGenerator = new Generator(7, CPU);
        var times = new List<double>();
        var cpu = new List<double>();
        for (int step = 0; step < warmup + repeats; step++)
        {
            using var scope = NewDisposeScope();
            var latents = randn([1, unetConfig.InChannels, side, side], generator: latentGenerator);
            double cpuBefore = ProcessorSeconds();
            var clock = Stopwatch.StartNew();
            trainer.TrainStep(latents, condition);
            double s = clock.Elapsed.TotalSeconds;
            if (step >= warmup)
            {
                times.Add(s);
                cpu.Add(ProcessorSeconds() - cpuBefore);
            }
            log($"[lora-cost] {name} {(step < warmup ? $"warm-up {step + 1}/{warmup}" : $"step {step - warmup + 1}/{repeats}")}: {s:F2} s, RSS {ProcessMemory.ResidentMiB() / 1024:F2} GiB");
        }
        double loss = trainer.TakeMeanLoss();
        if (!double.IsFinite(loss)) throw new InvalidOperationException($"The training loss is {loss}.");
        double peak = ProcessMemory.PeakResidentMiB();

        long? fileBytes = null;
        string? file = null;
        if (lora)
        {
            file = trainer.SaveLora(Path.Combine(outDir, $"lora-cost-{sdSize}-r{rank}.safetensors"));
            fileBytes = new FileInfo(file).Length;
        }
        string stepText = $"DiffusionTrainer.TrainStep at batch 1: latents [1, {unetConfig.InChannels}, {side}, {side}], text states [1, {textConfig.MaxPositionEmbeddings}, {textConfig.HiddenSize}], " +
            "t and noise, forward, MSE on ε, backward, gradient clipping at norm 1, AdamW";
        return new Result(name, mode, size, sdSize, lora ? rank : null, "ok", get_num_threads(), parameters, trainable, adapted, warmup,
            [.. times], TimingStats.From(times).MedianS, TimingStats.From(cpu).MedianS, before, peak, fileBytes, file,
            "CLIP text model resident; one caption encoded once and its states reused (the library caches them), its forward timed apart",
            textSeconds, stepText, DateTimeOffset.UtcNow.ToString("O"));
    }

    // runwayml/stable-diffusion-v1-5's scheduler: scaled-linear betas from 0.00085 to 0.012 over 1000 steps.
    private static NoiseScheduleOptions Sd15Schedule => new() { Kind = NoiseScheduleKind.ScaledLinear, BetaStart = 0.00085, BetaEnd = 0.012 };

    // User + system time of every thread of the process: on a loaded machine it moves less than the wall clock.
    private static double ProcessorSeconds()
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return self.TotalProcessorTime.TotalSeconds;
    }

    private const int VaeFactor = 8;   // the SD 1.x autoencoder's: 512×512 images are 64×64 latents

    /// <summary>A record for a configuration that did not finish (over the memory limit, or failed).</summary>
    public static Result Stopped(string mode, int size, string sdSize, int rank, string status, double peakMb, int threads, int warmup) =>
        new(Name(mode, size), mode, size, sdSize, mode == "lora" ? rank : null, status, threads, 0, 0, null, warmup, [], null, null, null, peakMb,
            null, null, "", null, "", DateTimeOffset.UtcNow.ToString("O"));

    public static void Append(string outDir, Result r)
    {
        Directory.CreateDirectory(outDir);
        File.AppendAllText(Path.Combine(outDir, JsonFile), JsonSerializer.Serialize(r, Line) + "\n");
    }

    /// <summary>Rewrites OUT/lora-cost.md from the newest record of each configuration in OUT/lora-cost.json.</summary>
    public static string WriteMarkdown(string outDir)
    {
        string path = Path.Combine(outDir, JsonFile);
        var latest = new Dictionary<(string, string, int?), Result>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var r = JsonSerializer.Deserialize<Result>(line, Json.Options)!;
            latest[(r.SdSize, r.Configuration, r.Rank)] = r;
        }
        var order = All.Select(c => Name(c.Mode, c.Size)).ToList();
        var rows = latest.Values.OrderBy(r => r.SdSize).ThenBy(r => order.IndexOf(r.Configuration) is var i and >= 0 ? i : int.MaxValue).ThenBy(r => r.Rank);
        static string GiB(double? mb) => mb is { } v ? $"{v / 1024:F2} GiB" : "–";
        var b = new StringBuilder();
        b.AppendLine("| network | training | image | trainable parameters | seconds per step (median) | RSS before training | peak RSS | adapter file |");
        b.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in rows)
        {
            string what = r.Mode == "lora" ? $"LoRA rank {r.Rank}" : "full fine-tune";
            string network = r.SdSize == "sd15" ? "SD 1.5 UNet" : "tiny UNet";
            if (r.Status != "ok")
            {
                b.AppendLine($"| {network} | {what} | {r.ImageSize}² | – | {r.Status} | – | {GiB(r.PeakRssMb)} | – |");
                continue;
            }
            string seconds = $"{r.MedianSeconds:F2} (n={r.Seconds.Length})";
            string file = r.AdapterFileBytes is { } bytes ? $"{bytes / 1e6:F2} MB" : "–";
            b.AppendLine($"| {network} | {what} | {r.ImageSize}² | {r.TrainableParameters:N0} | {seconds} | {GiB(r.RssBeforeTrainingMb)} | {GiB(r.PeakRssMb)} | {file} |");
        }
        b.AppendLine();
        b.AppendLine("Batch 1, float32, torch threads " + string.Join("/", latest.Values.Select(r => r.Threads).Distinct()) +
            ". Peak RSS = the process's VmHWM (one configuration per process; for a stopped one, the last RSS the driver read); " +
            "RSS before training = after building the UNet, " +
            "the text encoder and the trainer. The text encoder's states are computed once and reused, so a step excludes its forward.");
        File.WriteAllText(Path.Combine(outDir, MarkdownFile), b.ToString());
        return b.ToString();
    }
}
