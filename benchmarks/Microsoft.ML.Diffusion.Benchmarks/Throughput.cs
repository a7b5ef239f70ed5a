using System.Diagnostics;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>Seconds per training step and per generated image for one configuration.</summary>
internal static class Throughput
{
    public static ConfigResult Run(BenchmarkConfig config, BenchmarkOptions options, Action<string> log)
    {
        ProcessMemory.CollectGarbage();
        bool peakReset = ProcessMemory.TryResetPeak();
        var net = config.Network;
        long[] imageShape = [net.ImageChannels, net.ImageSize, net.ImageSize];
        int batch = config.Batch;
        int sampleBatch = options.SampleBatch ?? batch;

        // Training: DiffusionTrainer.TrainStep on a few fixed batches in [-1, 1].
        using var trainer = new DiffusionTrainer(net, options: new DiffusionTrainerOptions { BatchSize = batch, Seed = 1 }, device: CPU);
        long parameters = trainer.Network.parameters().Sum(p => p.numel());
        log($"[{config.Name}] {config.Description}: {parameters:N0} parameters, batch {batch}, {get_num_threads()} threads");
        var gen = new Generator(1234, CPU);
        var batches = Enumerable.Range(0, 4).Select(_ => (rand([batch, .. imageShape], generator: gen) * 2 - 1).DetachFromDisposeScope()).ToArray();
        try
        {
            for (int i = 0; i < options.EffectiveTrainWarmup; i++) trainer.TrainStep(batches[i % batches.Length]);
            trainer.TakeMeanLoss();
            var stepTimes = new List<double>();
            long faults0 = ProcessMemory.MinorFaults();
            for (int i = 0; i < options.EffectiveTrainSteps; i++)
            {
                long start = Stopwatch.GetTimestamp();
                trainer.TrainStep(batches[i % batches.Length]);
                stepTimes.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            double faults = (double)(ProcessMemory.MinorFaults() - faults0) / options.EffectiveTrainSteps;
            double loss = trainer.TakeMeanLoss();   // the one host read: all steps ran synchronously on the CPU anyway
            var train = new TrainResult(batch, options.EffectiveTrainWarmup, TimingStats.From(stepTimes), loss, faults);
            log($"[{config.Name}] train step: median {train.Step.MedianS:F3} s over {train.Step.Count} steps (min {train.Step.MinS:F3}, max {train.Step.MaxS:F3}); loss {loss:F4}; {faults:F0} minor page faults/step");

            var breakdown = Breakdown(net, batches, options.EffectiveBreakdownSteps);
            log($"[{config.Name}] breakdown (median s): data {breakdown.DataS:F4}, forward {breakdown.ForwardS:F4}, backward {breakdown.BackwardS:F4}, " +
                $"clip {breakdown.ClipS:F4}, optimizer {breakdown.OptimizerS:F4}, ema {breakdown.EmaS:F4}, other {breakdown.OtherS:F4}; inference forward {breakdown.ForwardInferenceS:F4}");

            // Sampling with the EMA weights, as an application would.
            using var model = trainer.ToModel();
            var seeds = Enumerable.Range(1, sampleBatch).Select(i => (long)i).ToArray();
            using (model.Generate(new GenerationOptions { Sampler = SamplerName.Ddim, Steps = 2 }, seeds)) { }   // warm-up
            var samplers = new List<SamplerResult>();
            foreach (var (name, kind, steps, timed) in new (string, SamplerName, int, int?)[]
            {
                ("DDPM 1000", SamplerName.Ddpm, 1000, options.EffectiveDdpmTimedSteps),
                ("DDIM 50", SamplerName.Ddim, 50, options.Quick ? 2 : null),
                ("DPM-Solver++ 20", SamplerName.DpmSolverPlusPlus, 20, options.Quick ? 2 : null),
            })
            {
                var r = TimeSampler(model, name, kind, steps, seeds, timed);
                samplers.Add(r);
                log($"[{config.Name}] {name}: {r.SPerImage:F4} s/image ({r.SPerStep:F3} s/step for {r.Batch} images" +
                    (r.Extrapolated ? $", timed {r.TimedSteps} of {r.Steps} steps and extrapolated)" : ")") + $"; {r.MinorFaultsPerStep:F0} minor page faults/step");
            }

            double peak = ProcessMemory.PeakResidentMiB();
            string? note = peakReset ? null : "VmHWM could not be reset between configurations, so the peak includes earlier ones";
            if (sampleBatch != batch) note = Join(note, $"sampling batch {sampleBatch}");
            return new ConfigResult(config.Name, config.Description, imageShape.Select(d => (int)d).ToArray(),
                new NetworkInfo(net.ImageChannels, net.ImageSize, net.BaseChannels, net.ChannelMultipliers, net.ResidualBlocksPerLevel,
                    net.AttentionResolutions, net.AttentionHeads, net.NormGroups),
                parameters, train, breakdown, samplers.ToArray(), peak, note);
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
            gen.Dispose();
        }
    }

    private static string Join(string? a, string b) => a is null ? b : $"{a}; {b}";

    /// <summary>
    /// Times a sampler on one batch. With <paramref name="timedSteps"/> the real <see cref="SamplingLoop"/> is
    /// stopped (through its cancellation token) after that many steps and the per-step time extrapolated.
    /// </summary>
    internal static SamplerResult TimeSampler(DiffusionModel model, string name, SamplerName kind, int steps, long[] seeds, int? timedSteps)
    {
        int batch = seeds.Length;
        if (timedSteps is null || timedSteps >= steps)
        {
            long f0 = ProcessMemory.MinorFaults();
            long start = Stopwatch.GetTimestamp();
            using (model.Generate(new GenerationOptions { Sampler = kind, Steps = steps }, seeds)) { }
            double total = Stopwatch.GetElapsedTime(start).TotalSeconds;
            double f = (double)(ProcessMemory.MinorFaults() - f0) / steps;
            return new SamplerResult(name, kind.ToString(), steps, batch, steps, false, total / steps, total, total / batch, f);
        }

        int k = timedSteps.Value;
        using var noise = NoiseSource.PerSample(seeds);
        using var sampler = model.CreateSampler(new GenerationOptions { Sampler = kind });
        using var x = noise.Next([batch, .. model.ImageShape], model.Device);
        using var cts = new CancellationTokenSource();
        long faults0 = ProcessMemory.MinorFaults();
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            using var result = SamplingLoop.Run(model.AsDenoiser(), sampler, x, steps, noise,
                onStep: (done, _) => { if (done == k) cts.Cancel(); }, cancellationToken: cts.Token);
        }
        catch (OperationCanceledException) { }
        double perStep = Stopwatch.GetElapsedTime(t0).TotalSeconds / k;
        double faults = (double)(ProcessMemory.MinorFaults() - faults0) / k;
        return new SamplerResult(name, kind.ToString(), steps, batch, k, true, perStep, perStep * steps, perStep * steps / batch, faults);
    }

    /// <summary>
    /// A hand-written copy of <see cref="DiffusionTrainer.TrainStep"/> (same network, loss, AdamW, clipping, EMA)
    /// with a stopwatch between the phases. On the CPU every op runs synchronously, so the splits are exact.
    /// </summary>
    private static BreakdownResult Breakdown(UNetOptions net, Tensor[] batches, int steps)
    {
        var schedule = NoiseSchedule.Create(new NoiseScheduleOptions());
        manual_seed(1);
        using var network = NoisePredictors.Create(net);   // the trainer's network and EMA copy, built as it builds them
        using var emaNetwork = NoisePredictors.Create(net);
        emaNetwork.eval();
        foreach (var p in emaNetwork.parameters()) p.requires_grad = false;
        var ema = new ExponentialMovingAverage(network, emaNetwork, 0.999);
        using var optimizer = optim.AdamW(network.parameters(), 2e-4, weight_decay: 0);
        using var forward = new ForwardProcess(schedule, CPU);
        using var gen = new Generator(7, CPU);
        using var lossSum = zeros(1);
        var phases = new List<double>[8];
        for (int i = 0; i < phases.Length; i++) phases[i] = new List<double>();

        for (int step = 0; step <= steps; step++)   // step 0 is a warm-up
        {
            long t0 = Stopwatch.GetTimestamp(), t1, t2, t3, t4, t5, t6;
            using (var scope = NewDisposeScope())
            {
                network.train();
                var x0 = batches[step % batches.Length];
                long n = x0.shape[0];
                var t = randint(0, schedule.Length, [n], dtype: int64, generator: gen);
                var noise = randn(x0.shape, dtype: float32, generator: gen);
                var xt = forward.AddNoise(x0, t, noise);
                t1 = Stopwatch.GetTimestamp();

                foreach (var g in optimizer.ParamGroups) g.LearningRate = 2e-4;
                optimizer.zero_grad();
                var loss = nn.functional.mse_loss(network.forward(xt, t), noise);
                t2 = Stopwatch.GetTimestamp();
                loss.backward();
                t3 = Stopwatch.GetTimestamp();
                nn.utils.clip_grad_norm_(network.parameters(), 1.0);
                t4 = Stopwatch.GetTimestamp();
                optimizer.step();
                t5 = Stopwatch.GetTimestamp();
                ema.Update(step + 1);
                using (no_grad()) lossSum.add_(loss.detach());
                t6 = Stopwatch.GetTimestamp();
            }
            long t7 = Stopwatch.GetTimestamp();   // dispose scope closed
            if (step == 0) continue;
            double S(long a, long b) => Stopwatch.GetElapsedTime(a, b).TotalSeconds;
            phases[0].Add(S(t0, t1)); phases[1].Add(S(t1, t2)); phases[2].Add(S(t2, t3)); phases[3].Add(S(t3, t4));
            phases[4].Add(S(t4, t5)); phases[5].Add(S(t5, t6)); phases[6].Add(S(t6, t7)); phases[7].Add(S(t0, t7));
        }

        // Inference forward (what every sampling step costs), on the EMA network under inference mode.
        var inference = new List<double>();
        using (inference_mode())
        {
            for (int i = 0; i <= steps; i++)
            {
                using var scope = NewDisposeScope();
                var x = batches[i % batches.Length];
                var t = full(x.shape[0], 500, dtype: int64);
                long s = Stopwatch.GetTimestamp();
                emaNetwork.forward(x, t);
                if (i > 0) inference.Add(Stopwatch.GetElapsedTime(s).TotalSeconds);
            }
        }

        double M(List<double> v) => TimingStats.From(v).MedianS;
        return new BreakdownResult(steps, (int)batches[0].shape[0], M(phases[0]), M(phases[1]), M(phases[2]), M(phases[3]),
            M(phases[4]), M(phases[5]), M(phases[6]), M(phases[7]), M(inference));
    }
}
