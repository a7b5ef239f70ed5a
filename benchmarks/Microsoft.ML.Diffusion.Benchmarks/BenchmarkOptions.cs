namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>Command-line settings of the benchmark (see <see cref="Usage"/>).</summary>
internal sealed record BenchmarkOptions
{
    public bool Quick { get; init; }
    public bool Soak { get; init; }
    public bool Ops { get; init; }
    public bool Overhead { get; init; }
    public bool Serving { get; init; }
    public bool ServingSoak { get; init; }
    public int? ServingSoakRequests { get; init; }
    public bool Serve { get; init; }
    public string OutputDirectory { get; init; } = Path.Combine("benchmarks", "results");
    public string[] Configs { get; init; } = ["bench", "rgb32"];
    public int? Threads { get; init; }
    public int? TrainWarmup { get; init; }
    public int? TrainSteps { get; init; }
    public int? BreakdownSteps { get; init; }
    public int? BenchBatch { get; init; }
    public int? Rgb32Batch { get; init; }
    public int? SampleBatch { get; init; }
    public int? DdpmTimedSteps { get; init; }
    public int? SoakTrainSteps { get; init; }
    public int? SoakSamplingRuns { get; init; }
    public int SoakBatch { get; init; } = 8;
    public double SoakMaxGrowthPercent { get; init; } = 5.0;
    public bool ForwardBatches { get; init; }
    public bool Quality { get; init; }
    public bool QualityTrainOnly { get; init; }
    public int[] QualitySteps { get; init; } = [890, 1780, 3560];
    public int QualitySamples { get; init; } = 500;
    public int QualityFirstSeed { get; init; }
    public double[] QualityGuidance { get; init; } = [0, 1, 3, 5];
    public int ClassifierEpochs { get; init; } = 3;
    public string? GridDirectory { get; init; }
    public bool SamplerSweep { get; init; }
    public int SweepSamples { get; init; } = 250;
    public int[] SweepEvaluations { get; init; } = [5, 10, 20, 50, 100, 1000];
    public double SweepGuidance { get; init; } = 1;
    public bool SweepReportOnly { get; init; }
    public bool Streaming { get; init; }
    public string? DiffusersFolder { get; init; }
    public int DiffusersSteps { get; init; } = 10;
    public int DiffusersRepeats { get; init; } = 1;
    public string[] StreamingParts { get; init; } = ["memory", "fashion", "folder"];
    public bool RecipeSearch { get; init; }
    public string[]? Recipes { get; init; }
    public int[] RecipeSteps { get; init; } = [1000, 2437];
    public int RecipeSamples { get; init; } = 1000;
    public int RecipeTimingSteps { get; init; } = 10;
    public int? RecipeStopAt { get; init; }
    public bool RecipeSecondSeeds { get; init; }
    public string Network { get; init; } = BenchmarkNetworks.UNet2D;
    public int TrainSeed { get; init; } = 1;
    public bool WeightsMemory { get; init; }
    public double WeightsGigabytes { get; init; } = 2;
    public string WeightsReader { get; init; } = "file";
    public bool WeightsKeepFile { get; init; }
    public bool SdComponents { get; init; }
    public string[] SdComponentNames { get; init; } = [.. Benchmarks.SdComponents.Components];
    public string SdSize { get; init; } = "sd15";
    public string SdDtype { get; init; } = "float32";
    public int Repeats { get; init; } = 3;
    public bool LoraCost { get; init; }
    public bool LoraCostAll { get; init; }
    public string LoraCostMode { get; init; } = "lora";
    public int LoraCostSize { get; init; } = 256;
    public int LoraRank { get; init; } = 4;
    public double MemoryLimitGib { get; init; } = 21;

    public const string Usage = """
        Microsoft.ML.Diffusion.Benchmarks: CPU throughput and memory benchmark of the diffusion engine.

          dotnet run --project benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release -- [options]

          --quick                 a handful of iterations only (smoke test; numbers are rough)
          --soak                  memory soak instead of throughput: 3000 training steps + 200 sampling runs
                                  (DDIM 10 steps, batch 8); exit code 1 when RSS grows by >= 5 % after warm-up
          --ops                   single-op timings (conv, GroupNorm, attention, ...) on the bench shapes, forward and
                                  forward+backward, to compare kernels with ddpm_reference.py --ops
          --out DIR               where to write torchsharp.json / torchsharp.md (default benchmarks/results)
          --configs a,b           configurations to run: bench, rgb32 (default both)
          --threads N             libtorch intra-op threads (default: the engine's choice, all cores)
          --train-warmup N        untimed training steps before timing (default 3; quick 1; lora-cost 2)
          --train-steps N         timed training steps, median reported (default 20; quick 3)
          --breakdown-steps N     steps of the forward/backward/optimizer breakdown (default 6; quick 2)
          --sample-batch N        images per sampling run (default 64)
          --bench-batch N         training and sampling batch of bench (default 64)
          --rgb32-batch N         training and sampling batch of rgb32 (default 64)
          --ddpm-timed-steps N    DDPM 1000 is timed over its first N steps and extrapolated (default 50; quick 2)
          --overhead              generate 256 images through DiffusionGenerate and directly; print the overhead
          --serving               load on DiffusionGenerationService: 1, 4, 8, 16 closed-loop clients, one at a time vs batched
                                  (bench network, DPM-Solver++ 20); prints throughput and p50/p95 latency
          --serving-soak          memory over 1000 requests to DiffusionGenerationService (8 clients, bench network, 20 steps,
                                  every tenth request abandoned mid-way): RSS, native and managed heap after each of 12 rounds;
                                  exit code 1 when a measure's floor keeps rising (quick: 96 requests, 5 steps, 6 rounds)
          --serving-soak-requests N  (serving-soak) requests after the warm-up (default 1000; quick 96)
          --serve                 answer timing requests on stdin, one at a time (the C# side of benchmarks/lockstep.py)
          --soak-train-steps N    (soak) training steps (default 3000; quick 300)
          --soak-sampling-runs N  (soak) sampling runs (default 200; quick 20)
          --soak-batch N          (soak) training and sampling batch (default 8)
          --soak-max-growth P     (soak) failing RSS growth in percent (default 5)
          --forward-batches       seconds per image of one inference forward of the bench network at batch 16-256
          --quality               Fashion-MNIST quality study: trains the evaluation classifier and a class-conditional
                                  model, then reports class accuracy, Fréchet distance, precision and recall per
                                  snapshot and guidance scale (needs eng/install-data.sh; about 1 h 10 min)
          --quality-train-only    (quality) train and save the snapshots, evaluate nothing
          --quality-steps a,b,c   (quality) snapshot step counts (default 890,1780,3560 = 10/20/40 min at 0.674 s/step)
          --quality-samples N     (quality) generated images per guidance scale (default 500, 50 per class)
          --quality-guidance a,b  (quality) guidance scales (default 0,1,3,5)
          --quality-first-seed N  (quality) sampling seeds N..N+count-1 (default 0), to score the same snapshots on another
                                  seed set; reports and grids of N > 0 are tagged -seedsN (fashion-quality-unet2d-seeds500.md)
          --classifier-epochs N   (quality) epochs of the evaluation classifier (default 3)
          --grids DIR             (quality) write class grids of the last snapshot for each guidance scale to DIR
          --sampler-sweep         Fréchet distance by network evaluations for every registered sampler on the quality
                                  study's last snapshot (trained first if missing); cells resume from the JSON in
                                  OUT/quality; writes sampler-sweep.md/.json and, with --grids DIR, DIR/sampler-sweep.png
          --sweep-samples N       (sweep) images per cell (default 250, 25 per class)
          --sweep-nfe a,b,c       (sweep) network-evaluation budgets (default 5,10,20,50,100,1000)
          --sweep-guidance W      (sweep) guidance scale (default 1: the conditional prediction, the study's best FD)
          --sweep-report-only     (sweep) write the table and plot from the cells measured so far; run no new cell
          --streaming             streamed training: peak memory training 100 steps on a lazily generated view of
                                  1,000,000 RGB 64x64 rows; Fashion-MNIST ms/step streamed vs in memory (bench network,
                                  100 steps, twice each); data-wait share over 300 steps on 20,000 PNG files written from Fashion-MNIST
                                  to OUT (needs eng/install-data.sh; about 15 min)
          --streaming-parts a,b   (streaming) which of memory, fashion, folder to run (default all)
          --diffusers-sample DIR  DDIM sampling of a diffusers UNet2DModel folder (the C# side of
                                  benchmarks/diffusers_lockstep.py); prints {"median_seconds": …} on stdout
          --diffusers-steps N     (diffusers-sample) DDIM steps (default 10); the batch is --sample-batch (default 64)
          --diffusers-repeats N   (diffusers-sample) timed runs after one warm-up run (default 1)
          --recipes               training-recipe search: unconditional bench models trained with each recipe on
                                  Fashion-MNIST, Fréchet distance, precision and recall of DDIM-50 samples after each
                                  step count, step times measured round-robin; resumes from OUT/recipes; writes
                                  training-recipes.md/.json (needs eng/install-data.sh; about an hour per recipe on 2 cores)
          --recipe-names a,b      (recipes) which recipes, in this order (default all)
          --recipe-steps a,b      (recipes) snapshot step counts (default 1000,2437)
          --recipe-samples N      (recipes) generated images per cell (default 1000)
          --recipe-stop-at N      (recipes) screening: train the chosen recipes only to step count N (one of
                                  --recipe-steps); decaying learning rates keep the last count as their horizon
          --recipe-second-seeds   (recipes) also score the chosen recipes' last snapshots on the next N seeds (the plain
                                  recipe's always), to show how far the scores move with the samples alone
          --recipe-timing-steps N (recipes) steps per recipe and round of the step-time measurement (default 10; 0 skips it:
                                  processes that share the machine, each with its own --recipe-names, leave it to a
                                  last run on a quiet machine, which times every scored recipe and reuses every cell)
          --network N             (quality, recipes, sampler-sweep) the network trained: unet2d (the default and only one:
                                  TrainDiffusion's default, diffusers' UNet2DModel of the bench shape); its snapshots and
                                  state files are tagged -unet2d. The library's first UNet (unet) no longer trains; its
                                  measurements are in docs/training-recipe.md and docs/fashion-mnist.md
          --train-seed N          (quality, recipes) training seed (default 1); other seeds' files are tagged -seedN
          --weights-memory        peak RSS (VmHWM) loading a float32 safetensors file of --weights-gb GiB (default 2) into a
                                  module of the same size (4096×4096 linear layers); prints (peak − RSS before the module) /
                                  file size; the file goes to OUT and is deleted after (--weights-keep keeps it for the next run)
          --weights-reader R      (weights-memory) file: SafeTensorsFile tensor by tensor (default); bytes: the whole-file
                                  reader, for comparison (below 2 GiB); run each in its own process
          --sd-components         Stable Diffusion 1.5's networks with random weights, each timed on its share of one
                                  512x512 text-to-image run: a guided denoising step (UNet, batch 2, 64x64 latents, 77x768
                                  text states), text encoding (CLIP text model, 2x77 tokens), the VAE's decode (1x4x64x64);
                                  one warm-up, then the median of --repeats; prints one JSON line per component with the
                                  seconds and the process's peak RSS (the C# side of benchmarks/sd_lockstep.py)
          --sd-component a,b      (sd-components) which of unet, text, vae, in this order (default all; for a peak RSS per
                                  component run one per process)
          --sd-dtype T            (sd-components) float32 (default), bfloat16 or float16: weights and activations
          --sd-size S             (sd-components, lora-cost) sd15 (default) or tiny (two-level networks of the same blocks, a smoke test)
          --repeats N             (sd-components, lora-cost) timed runs after the warm-up (default 3)
          --lora-cost             one training step of Stable Diffusion 1.5's UNet (random weights) at batch 1 on the CPU, the
                                  library's DiffusionTrainer.TrainStep: LoRA adapters or the whole UNet in AdamW; prints one JSON
                                  line (median seconds per step, RSS before training, peak RSS, trainable parameters, the LoRA
                                  file's size), appends it to OUT/lora-cost.json and rewrites OUT/lora-cost.md; one
                                  configuration per process, so the peak RSS is its own
          --lora-cost-mode M      (lora-cost) lora (default) or full
          --lora-cost-size S      (lora-cost) image size: 256 (default) or 512 (latents of S/8)
          --lora-rank R           (lora-cost) the adapters' rank (default 4, diffusers' train_text_to_image_lora default)
          --lora-cost-all         lora-256, full-256, lora-512, full-512, each in a child process of this benchmark, killed when
                                  its RSS passes --memory-limit-gib (recorded as "stopped at N GiB (over the limit)")
          --memory-limit-gib G    (lora-cost-all) the children's RSS limit (default 21)
        """;

    public static BenchmarkOptions Parse(string[] args)
    {
        var o = new BenchmarkOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value.");
            int Int() => int.TryParse(Value(), out int v) && v > 0 ? v : throw new ArgumentException($"{a} needs a positive integer.");
            int NonNegative() => int.TryParse(Value(), out int v) && v >= 0 ? v : throw new ArgumentException($"{a} needs a non-negative integer.");
            o = a switch
            {
                "--quick" => o with { Quick = true },
                "--soak" => o with { Soak = true },
                "--ops" => o with { Ops = true },
                "--overhead" => o with { Overhead = true },
                "--serving" => o with { Serving = true },
                "--serving-soak" => o with { ServingSoak = true },
                "--serving-soak-requests" => o with { ServingSoak = true, ServingSoakRequests = Int() },
                "--serve" => o with { Serve = true },
                "--out" => o with { OutputDirectory = Value() },
                "--configs" => o with { Configs = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--threads" => o with { Threads = Int() },
                "--train-warmup" => o with { TrainWarmup = Int() },
                "--train-steps" => o with { TrainSteps = Int() },
                "--breakdown-steps" => o with { BreakdownSteps = Int() },
                "--sample-batch" => o with { SampleBatch = Int() },
                "--bench-batch" => o with { BenchBatch = Int() },
                "--rgb32-batch" => o with { Rgb32Batch = Int() },
                "--ddpm-timed-steps" => o with { DdpmTimedSteps = Int() },
                "--soak-train-steps" => o with { SoakTrainSteps = Int() },
                "--soak-sampling-runs" => o with { SoakSamplingRuns = Int() },
                "--soak-batch" => o with { SoakBatch = Int() },
                "--soak-max-growth" => o with { SoakMaxGrowthPercent = double.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture) },
                "--forward-batches" => o with { ForwardBatches = true },
                "--quality" => o with { Quality = true },
                "--quality-train-only" => o with { Quality = true, QualityTrainOnly = true },
                "--quality-steps" => o with { QualitySteps = Ints(Value(), a) },
                "--quality-samples" => o with { QualitySamples = Int() },
                "--quality-first-seed" => o with { QualityFirstSeed = NonNegative() },
                "--quality-guidance" => o with { QualityGuidance = Doubles(Value(), a) },
                "--classifier-epochs" => o with { ClassifierEpochs = Int() },
                "--grids" => o with { GridDirectory = Value() },
                "--sampler-sweep" => o with { SamplerSweep = true },
                "--sweep-samples" => o with { SweepSamples = Int() },
                "--sweep-nfe" => o with { SweepEvaluations = Ints(Value(), a) },
                "--sweep-guidance" => o with { SweepGuidance = Doubles(Value(), a)[0] },
                "--streaming" => o with { Streaming = true },
                "--diffusers-sample" => o with { DiffusersFolder = Value() },
                "--diffusers-steps" => o with { DiffusersSteps = Int() },
                "--diffusers-repeats" => o with { DiffusersRepeats = Int() },
                "--streaming-parts" => o with { Streaming = true, StreamingParts = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--recipes" => o with { RecipeSearch = true },
                "--recipe-names" => o with { RecipeSearch = true, Recipes = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--recipe-steps" => o with { RecipeSteps = Ints(Value(), a) },
                "--recipe-samples" => o with { RecipeSamples = Int() },
                "--recipe-stop-at" => o with { RecipeStopAt = Int() },
                "--recipe-second-seeds" => o with { RecipeSearch = true, RecipeSecondSeeds = true },
                "--network" => o with { Network = BenchmarkNetworks.Parse(Value(), a) },
                "--train-seed" => o with { TrainSeed = Int() },
                "--recipe-timing-steps" => o with { RecipeTimingSteps = int.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture) },
                "--weights-memory" => o with { WeightsMemory = true },
                "--weights-gb" => o with { WeightsMemory = true, WeightsGigabytes = Doubles(Value(), a)[0] },
                "--weights-reader" => o with { WeightsMemory = true, WeightsReader = Value() },
                "--weights-keep" => o with { WeightsMemory = true, WeightsKeepFile = true },
                "--sd-components" => o with { SdComponents = true },
                "--sd-component" => o with { SdComponents = true, SdComponentNames = OneOf(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), Benchmarks.SdComponents.Components, a) },
                "--sd-dtype" => o with { SdComponents = true, SdDtype = OneOf([Value()], Benchmarks.SdComponents.DTypes, a)[0] },
                "--sd-size" => o with { SdComponents = true, SdSize = OneOf([Value()], Benchmarks.SdComponents.Sizes, a)[0] },
                "--repeats" => o with { Repeats = Int() },
                "--lora-cost" => o with { LoraCost = true },
                "--lora-cost-all" => o with { LoraCostAll = true },
                "--lora-cost-mode" => o with { LoraCost = true, LoraCostMode = OneOf([Value()], Benchmarks.LoraCost.Modes, a)[0] },
                "--lora-cost-size" => o with { LoraCost = true, LoraCostSize = int.Parse(OneOf([Value()], Benchmarks.LoraCost.ImageSizes, a)[0], System.Globalization.CultureInfo.InvariantCulture) },
                "--lora-rank" => o with { LoraRank = Int() },
                "--memory-limit-gib" => o with { MemoryLimitGib = Doubles(Value(), a)[0] is > 0 and var g ? g : throw new ArgumentException($"{a} needs a positive number.") },
                "--sweep-report-only" => o with { SamplerSweep = true, SweepReportOnly = true },
                "-h" or "--help" => throw new HelpRequestedException(),
                _ => throw new ArgumentException($"Unknown option '{a}'."),
            };
        }
        foreach (var c in o.Configs)
            if (!BenchmarkConfig.Names.Contains(c)) throw new ArgumentException($"Unknown configuration '{c}'; known: {string.Join(", ", BenchmarkConfig.Names)}.");
        return o;
    }

    private static string[] OneOf(string[] values, string[] known, string option)
        => values.Length == 0 ? throw new ArgumentException($"{option} needs a value.")
            : values.FirstOrDefault(v => !known.Contains(v)) is { } bad ? throw new ArgumentException($"{option} is one of {string.Join(", ", known)}, not '{bad}'.")
            : values;

    private static int[] Ints(string text, string option)
        => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v => int.TryParse(v, out int n) && n > 0 ? n : throw new ArgumentException($"{option} needs positive integers, not '{v}'."))
            .ToArray() is { Length: > 0 } values ? values : throw new ArgumentException($"{option} needs at least one value.");

    private static double[] Doubles(string text, string option)
        => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v => double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out double d) && d >= 0 && double.IsFinite(d) ? d : throw new ArgumentException($"{option} needs non-negative numbers, not '{v}'."))
            .ToArray() is { Length: > 0 } values ? values : throw new ArgumentException($"{option} needs at least one value.");

    public int EffectiveTrainWarmup => TrainWarmup ?? (Quick ? 1 : 3);
    public int LoraCostWarmup => TrainWarmup ?? 2;
    public int EffectiveTrainSteps => TrainSteps ?? (Quick ? 3 : 20);
    public int EffectiveBreakdownSteps => BreakdownSteps ?? (Quick ? 2 : 6);
    public int EffectiveDdpmTimedSteps => DdpmTimedSteps ?? (Quick ? 2 : 50);
    public int EffectiveSoakTrainSteps => SoakTrainSteps ?? (Quick ? 300 : 3000);
    public int EffectiveSoakSamplingRuns => SoakSamplingRuns ?? (Quick ? 20 : 200);
}

internal sealed class HelpRequestedException : Exception;
