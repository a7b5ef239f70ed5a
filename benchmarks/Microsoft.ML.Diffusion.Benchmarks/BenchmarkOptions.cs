namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>Command-line settings of the benchmark (see <see cref="Usage"/>).</summary>
internal sealed record BenchmarkOptions
{
    public bool Quick { get; init; }
    public bool Soak { get; init; }
    public bool Ops { get; init; }
    public bool Overhead { get; init; }
    public string OutputDirectory { get; init; } = Path.Combine("benchmarks", "results");
    public string[] Configs { get; init; } = ["bench", "rgb32"];
    public int? Threads { get; init; }
    public int? TrainWarmup { get; init; }
    public int? TrainSteps { get; init; }
    public int? BreakdownSteps { get; init; }
    public int? Rgb32Batch { get; init; }
    public int? SampleBatch { get; init; }
    public int? DdpmTimedSteps { get; init; }
    public int? SoakTrainSteps { get; init; }
    public int? SoakSamplingRuns { get; init; }
    public int SoakBatch { get; init; } = 8;
    public double SoakMaxGrowthPercent { get; init; } = 5.0;

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
          --train-warmup N        untimed training steps before timing (default 3; quick 1)
          --train-steps N         timed training steps, median reported (default 20; quick 3)
          --breakdown-steps N     steps of the forward/backward/optimizer breakdown (default 6; quick 2)
          --sample-batch N        images per sampling run (default 64)
          --rgb32-batch N         training and sampling batch of rgb32 (default 64)
          --ddpm-timed-steps N    DDPM 1000 is timed over its first N steps and extrapolated (default 50; quick 2)
          --overhead              generate 256 images through DiffusionGenerate and directly; print the overhead
          --soak-train-steps N    (soak) training steps (default 3000; quick 300)
          --soak-sampling-runs N  (soak) sampling runs (default 200; quick 20)
          --soak-batch N          (soak) training and sampling batch (default 8)
          --soak-max-growth P     (soak) failing RSS growth in percent (default 5)
        """;

    public static BenchmarkOptions Parse(string[] args)
    {
        var o = new BenchmarkOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value.");
            int Int() => int.TryParse(Value(), out int v) && v > 0 ? v : throw new ArgumentException($"{a} needs a positive integer.");
            o = a switch
            {
                "--quick" => o with { Quick = true },
                "--soak" => o with { Soak = true },
                "--ops" => o with { Ops = true },
                "--overhead" => o with { Overhead = true },
                "--out" => o with { OutputDirectory = Value() },
                "--configs" => o with { Configs = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--threads" => o with { Threads = Int() },
                "--train-warmup" => o with { TrainWarmup = Int() },
                "--train-steps" => o with { TrainSteps = Int() },
                "--breakdown-steps" => o with { BreakdownSteps = Int() },
                "--sample-batch" => o with { SampleBatch = Int() },
                "--rgb32-batch" => o with { Rgb32Batch = Int() },
                "--ddpm-timed-steps" => o with { DdpmTimedSteps = Int() },
                "--soak-train-steps" => o with { SoakTrainSteps = Int() },
                "--soak-sampling-runs" => o with { SoakSamplingRuns = Int() },
                "--soak-batch" => o with { SoakBatch = Int() },
                "--soak-max-growth" => o with { SoakMaxGrowthPercent = double.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture) },
                "-h" or "--help" => throw new HelpRequestedException(),
                _ => throw new ArgumentException($"Unknown option '{a}'."),
            };
        }
        foreach (var c in o.Configs)
            if (!BenchmarkConfig.Names.Contains(c)) throw new ArgumentException($"Unknown configuration '{c}'; known: {string.Join(", ", BenchmarkConfig.Names)}.");
        return o;
    }

    public int EffectiveTrainWarmup => TrainWarmup ?? (Quick ? 1 : 3);
    public int EffectiveTrainSteps => TrainSteps ?? (Quick ? 3 : 20);
    public int EffectiveBreakdownSteps => BreakdownSteps ?? (Quick ? 2 : 6);
    public int EffectiveDdpmTimedSteps => DdpmTimedSteps ?? (Quick ? 2 : 50);
    public int EffectiveSoakTrainSteps => SoakTrainSteps ?? (Quick ? 300 : 3000);
    public int EffectiveSoakSamplingRuns => SoakSamplingRuns ?? (Quick ? 20 : 200);
}

internal sealed class HelpRequestedException : Exception;
