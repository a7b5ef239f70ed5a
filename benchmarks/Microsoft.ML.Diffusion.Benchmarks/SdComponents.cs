using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.Diffusion.Networks.Autoencoders;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Networks.TextEncoders;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// One side of benchmarks/sd_lockstep.py: the three networks of Stable Diffusion 1.5 with random weights, each timed on
/// the work one 512×512 text-to-image run gives it. A guided denoising step is the UNet at batch 2 (unconditional and
/// conditional halves) on 64×64 latents with 77×768 text states, then the guidance combination; text encoding is the
/// CLIP text model on 2×77 token ids; decoding is the VAE decoder on 1×4×64×64 latents. Each component runs once to
/// warm up (oneDNN primitives, the allocator), then <c>repeats</c> times; the median is reported. Peak RSS (VmHWM) is the
/// whole process's, so a fair per-component figure needs one component per process (what the driver does).
/// <c>benchmarks/diffusers_sd_components.py</c> is the other side, on the same shapes.
/// </summary>
internal static class SdComponents
{
    public static readonly string[] Components = ["unet", "text", "vae"];
    public static readonly string[] Sizes = ["sd15", "tiny"];
    public static readonly string[] DTypes = ["float32", "bfloat16", "float16"];

    private static readonly JsonSerializerOptions Line = new(Json.Options) { WriteIndented = false };

    internal sealed record Result(string Component, string Size, string Dtype, int Threads, long Parameters, double BuildSeconds,
        double[] Seconds, double MedianSeconds, double MedianCpuSeconds, double BaselineRssMb, double PeakRssMb, string Input);

    /// <summary>Runs the components in order and prints one JSON line per component on stdout.</summary>
    public static int Run(string[] components, string size, string dtypeName, int repeats, Action<string> log)
    {
        var dtype = dtypeName switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            _ => throw new ArgumentException($"--sd-dtype is float32, bfloat16 or float16, not '{dtypeName}'."),
        };
        foreach (string component in components)
        {
            var r = RunOne(component, size, dtype, dtypeName, repeats, log);
            Console.WriteLine(JsonSerializer.Serialize(r, Line));
        }
        return 0;
    }

    private static Result RunOne(string component, string size, ScalarType dtype, string dtypeName, int repeats, Action<string> log)
    {
        bool tiny = size == "tiny";
        ProcessMemory.CollectGarbage();
        double baseline = ProcessMemory.ResidentMiB();
        manual_seed(0);
        using var noGrad = inference_mode();
        var build = Stopwatch.StartNew();
        // Parameters are made in the run's precision, so a float32 copy does not set the peak of a half-precision run.
        var defaultType = get_default_dtype();
        set_default_dtype(dtype);
        (nn.Module module, Action work, string input) built;
        try
        {
            built = component switch
            {
                "unet" => Unet(tiny, dtype),
                "text" => Text(tiny, dtype),
                "vae" => Vae(tiny, dtype),
                _ => throw new ArgumentException($"--sd-component is one of {string.Join(", ", Components)}, not '{component}'."),
            };
        }
        finally
        {
            set_default_dtype(defaultType);
        }
        var (module, work, input) = built;
        using var owned = module;
        double buildSeconds = build.Elapsed.TotalSeconds;
        long parameters = module.parameters().Sum(p => p.numel());
        log($"[sd-components] {component} ({size}, {dtypeName}): {parameters:N0} parameters, built in {buildSeconds:F1} s; {input}");
        var times = new List<double>();
        var cpu = new List<double>();
        for (int r = 0; r < repeats + 1; r++)   // the first run warms up and is not counted
        {
            using var scope = NewDisposeScope();
            double cpuBefore = ProcessorSeconds();
            var clock = Stopwatch.StartNew();
            work();
            double s = clock.Elapsed.TotalSeconds;
            if (r > 0)
            {
                times.Add(s);
                cpu.Add(ProcessorSeconds() - cpuBefore);
            }
            log($"[sd-components] {component} {(r == 0 ? "warm-up" : $"run {r}/{repeats}")}: {s:F3} s");
        }
        double peak = ProcessMemory.PeakResidentMiB();
        return new Result(component, size, dtypeName, get_num_threads(), parameters, buildSeconds, [.. times],
            TimingStats.From(times).MedianS, TimingStats.From(cpu).MedianS, baseline, peak, input);
    }

    // User + system time of every thread of the process: on a loaded machine it moves less than the wall clock.
    private static double ProcessorSeconds()
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return self.TotalProcessorTime.TotalSeconds;
    }

    /// <summary>The SD 1.5 UNet's config (runwayml/stable-diffusion-v1-5's unet/config.json), or a two-level one of the same kinds of blocks.</summary>
    internal static UNet2DConditionModelConfig UnetConfig(bool tiny) => tiny
        ? new UNet2DConditionModelConfig
        {
            SampleSize = 8, BlockOutChannels = [32, 64], DownBlockTypes = ["CrossAttnDownBlock2D", "DownBlock2D"],
            UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D"], AttentionHeadDim = [2], CrossAttentionDim = 32, LayersPerBlock = [1],
        }
        : new UNet2DConditionModelConfig
        {
            SampleSize = 64, BlockOutChannels = [320, 640, 1280, 1280], AttentionHeadDim = [8], CrossAttentionDim = 768, LayersPerBlock = [2],
        };

    /// <summary>CLIP ViT-L/14's text tower (SD 1.x), or a two-layer one of width 32 on 7 tokens.</summary>
    internal static ClipTextConfig TextConfig(bool tiny) => tiny
        ? ClipTextConfig.StableDiffusion1 with { VocabSize = 1000, HiddenSize = 32, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, MaxPositionEmbeddings = 7 }
        : ClipTextConfig.StableDiffusion1;

    // The UNet of UnetConfig on a guided denoising step.
    private static (nn.Module, Action, string) Unet(bool tiny, ScalarType dtype)
    {
        var config = UnetConfig(tiny);
        var unet = new UNet2DConditionModel(config);
        unet.eval();
        unet.to(dtype);
        int side = config.SampleSize!.Value, tokens = tiny ? 7 : 77;
        var latents = randn([1, 4, side, side]).to(dtype);
        var text = randn([2, tokens, config.CrossAttentionDim]).to(dtype);
        var t = tensor(981L);
        const double guidance = 7.5;
        void Step()
        {
            // diffusers' StableDiffusionPipeline: both halves in one batch, then uncond + w·(cond − uncond).
            var input = cat([latents, latents]);
            var prediction = unet.forward(input, t, text).chunk(2);
            var guided = prediction[0] + guidance * (prediction[1] - prediction[0]);
            guided.to(float32).sum().item<float>();
        }
        return (unet, Step, $"sample [2, 4, {side}, {side}], text states [2, {tokens}, {config.CrossAttentionDim}], guidance {guidance}");
    }

    // CLIP ViT-L/14's text tower (SD 1.x) on two prompts' token ids (the negative and the positive).
    private static (nn.Module, Action, string) Text(bool tiny, ScalarType dtype)
    {
        var config = TextConfig(tiny);
        var clip = new ClipTextModel(config);
        clip.eval();
        clip.to(dtype);
        var ids = randint(0, config.VocabSize, [2, config.MaxPositionEmbeddings], dtype: int64);
        void Encode() => clip.forward(ids).to(float32).sum().item<float>();
        return (clip, Encode, $"token ids [2, {config.MaxPositionEmbeddings}], hidden {config.HiddenSize}, {config.NumHiddenLayers} layers");
    }

    // The SD 1.x/2.x VAE; only its decoder (post_quant_conv + decoder) runs, as at the end of text-to-image.
    private static (nn.Module, Action, string) Vae(bool tiny, ScalarType dtype)
    {
        var config = tiny
            ? new AutoencoderKLConfig
            {
                DownBlockTypes = [AutoencoderKLConfig.DownEncoderBlock, AutoencoderKLConfig.DownEncoderBlock],
                UpBlockTypes = [AutoencoderKLConfig.UpDecoderBlock, AutoencoderKLConfig.UpDecoderBlock],
                BlockOutChannels = [32, 64], LayersPerBlock = 1, SampleSize = 16,
            }
            : AutoencoderKLConfig.StableDiffusion;
        var vae = new AutoencoderKL(config);
        vae.eval();
        vae.to(dtype);
        int side = config.SampleSize / config.DownscaleFactor;
        var latents = randn([1, config.LatentChannels, side, side]).to(dtype);
        void Decode() => vae.Decode(latents / config.ScalingFactor).to(float32).sum().item<float>();
        return (vae, Decode, $"latents [1, {config.LatentChannels}, {side}, {side}] → image [1, 3, {config.SampleSize}, {config.SampleSize}]");
    }
}
