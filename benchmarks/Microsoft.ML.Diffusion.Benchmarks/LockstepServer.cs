using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// The C# side of benchmarks/lockstep.py: answers timing requests one at a time on stdin/stdout, so that a
/// coordinator can alternate single measurements between this process and the PyTorch reference.
/// </summary>
/// <remarks>
/// This machine's CPU speed changes by up to 2× for minutes at a time, independently of what runs on it (a
/// plain arithmetic loop shows it), so two benchmark runs minutes apart do not compare. Both processes stay
/// alive, each idle while the other measures, and every PyTorch time has one of ours seconds away.
/// Protocol, one line per request and per answer (answers are seconds, invariant culture):
/// <c>setup NAME</c> → <c>ready PARAMETERS MEAN-ABS PROJECTION</c> (trains the warm-up steps, then takes the EMA
/// model; the last two are <see cref="NetworkProbe"/>'s, which the coordinator compares with the reference's);
/// <c>train N</c> → seconds per <see cref="DiffusionTrainer.TrainStep"/> over N steps;
/// <c>forward N</c> → seconds per inference forward of the EMA network (t = 500);
/// <c>sample ddpm|ddim|dpm STEPS TIMED</c> → seconds per sampling step, timing the first TIMED steps (0 = all);
/// <c>quit</c>. A failure answers <c>error MESSAGE</c>.
/// </remarks>
internal sealed class LockstepServer : IDisposable
{
    private readonly BenchmarkOptions _options;
    private readonly Action<string> _log;
    private DiffusionTrainer? _trainer;
    private DiffusionModel? _model;
    private Tensor[] _batches = [];
    private int _nextBatch;

    private LockstepServer(BenchmarkOptions options, Action<string> log) => (_options, _log) = (options, log);

    public static int Run(BenchmarkOptions options, Action<string> log)
    {
        using var server = new LockstepServer(options, log);
        string? line;
        while ((line = Console.In.ReadLine()) is not null)
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length == 0) continue;
            if (words[0] == "quit") break;
            string answer;
            try
            {
                answer = server.Handle(words);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or IndexOutOfRangeException)
            {
                answer = "error " + e.Message.ReplaceLineEndings(" ");
            }
            Console.Out.WriteLine(answer);
            Console.Out.Flush();
        }
        return 0;
    }

    private string Handle(string[] w) => w[0] switch
    {
        "setup" => Setup(w[1]),
        "train" => Seconds(Train(Count(w[1]))),
        "forward" => Seconds(Forward(Count(w[1]))),
        "sample" => Seconds(Sample(w[1], int.Parse(w[2], CultureInfo.InvariantCulture), int.Parse(w[3], CultureInfo.InvariantCulture))),
        _ => throw new ArgumentException($"unknown request '{w[0]}'"),
    };

    private static int Count(string word) =>
        int.TryParse(word, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new ArgumentException($"a count must be a positive whole number, got '{word}'");

    private static string Seconds(double s) => s.ToString("R", CultureInfo.InvariantCulture);

    private string Setup(string name)
    {
        ReleaseConfig();
        var config = BenchmarkConfig.Create(name, _options);
        var net = config.Network;
        _trainer = new DiffusionTrainer(net, options: new DiffusionTrainerOptions { BatchSize = config.Batch, Seed = 1 }, device: CPU);
        using var gen = new Generator(1234, CPU);
        _batches = Enumerable.Range(0, 4)
            .Select(_ => (rand([config.Batch, net.ImageChannels, net.ImageSize, net.ImageSize], generator: gen) * 2 - 1).DetachFromDisposeScope())
            .ToArray();
        for (int i = 0; i < _options.EffectiveTrainWarmup; i++) _trainer.TrainStep(NextBatch());
        _model = _trainer.ToModel();
        using (_model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 2 }, Seeds())) { }   // warm-up
        long parameters = _trainer.Network.parameters().Sum(p => p.numel());
        var (meanAbs, projection) = NetworkProbe.Run(net);
        _log($"[lockstep {name}] ready: {parameters:N0} parameters, batch {config.Batch}, probe {meanAbs:E6} {projection:E6}");
        return string.Create(CultureInfo.InvariantCulture, $"ready {parameters} {meanAbs:E9} {projection:E9}");
    }

    private Tensor NextBatch() => _batches[_nextBatch++ % _batches.Length];

    private long[] Seeds() => Enumerable.Range(1, _options.SampleBatch ?? (int)_batches[0].shape[0]).Select(i => (long)i).ToArray();

    private DiffusionTrainer Trainer => _trainer ?? throw new InvalidOperationException("send 'setup NAME' first");

    private DiffusionModel Model => _model ?? throw new InvalidOperationException("send 'setup NAME' first");

    private double Train(int steps)
    {
        var trainer = Trainer;
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++) trainer.TrainStep(NextBatch());
        return Stopwatch.GetElapsedTime(start).TotalSeconds / steps;
    }

    private double Forward(int count)
    {
        var model = Model;
        var x = NextBatch();
        using var t = full(x.shape[0], 500L, dtype: int64);
        using var mode = inference_mode();
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            model.Network.forward(x, t);
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds / count;
    }

    private double Sample(string kind, int steps, int timed)
    {
        var sampler = kind switch
        {
            "ddpm" => SamplerName.Ddpm,
            "ddim" => SamplerName.Ddim,
            "dpm" => SamplerName.DpmSolverPlusPlus,
            _ => throw new ArgumentException($"unknown sampler '{kind}' (ddpm, ddim, dpm)"),
        };
        var r = Throughput.TimeSampler(Model, kind, sampler, steps, Seeds(), timed > 0 ? timed : null);
        return r.SPerStep;
    }

    private void ReleaseConfig()
    {
        _model?.Dispose();
        _trainer?.Dispose();
        foreach (var b in _batches) b.Dispose();
        (_model, _trainer, _batches, _nextBatch) = (null, null, [], 0);
        ProcessMemory.CollectGarbage();
    }

    public void Dispose() => ReleaseConfig();
}
