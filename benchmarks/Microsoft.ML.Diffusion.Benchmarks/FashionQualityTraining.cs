using System.Diagnostics;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>One saved model of the quality study: the weights after <see cref="Steps"/> steps.</summary>
internal sealed record QualitySnapshot(int Steps, double TrainingSeconds, double TrainingMinutesAtReferencePace, double Loss, string Path);

/// <summary>
/// The training half of the Fashion-MNIST quality study: one class-conditional model (the bench network in the family
/// --network names, batch 64) trained on the 60,000 training images, with the EMA model saved after each step count in
/// <see cref="BenchmarkOptions.QualitySteps"/>. The step counts stand for minutes of CPU training at the
/// quiet-machine pace of the bench configuration (<see cref="ReferenceSecondsPerStep"/>); counting steps
/// rather than seconds keeps the models identical from run to run. Training resumes from a state file,
/// and snapshots already on disk are reused.
/// </summary>
internal static class FashionQualityTraining
{
    /// <summary>Seconds per bench training step on the quiet 2-core machine (benchmarks/run.sh --configs bench).</summary>
    public const double ReferenceSecondsPerStep = 0.674;

    public static UNetOptions Network => new()
    {
        ImageChannels = 1, ImageSize = FashionMnist.ImageSize, BaseChannels = 32, ChannelMultipliers = [1, 2, 2],
        ResidualBlocksPerLevel = 1, AttentionResolutions = [7],
        Condition = new ConditioningOptions { Kind = ConditionKind.Class, ClassCount = FashionMnist.ClassCount },
    };

    public static DiffusionTrainerOptions TrainerOptions => new()
    {
        BatchSize = 64, LearningRate = 5e-4, WarmupSteps = 200, EmaDecay = 0.998, ConditionDropout = 0.1, Seed = 1,
    };

    /// <summary>The network trained: the bench shape, class-conditional, in the family --network names.</summary>
    public static NoisePredictorOptions NetworkOf(BenchmarkOptions options) => BenchmarkNetworks.For(options.Network, Network);

    public static string SnapshotPath(string directory, int steps, string tag = "") => System.IO.Path.Combine(directory, $"fashion-class{tag}-{steps:D5}.mldiff");

    public static List<QualitySnapshot> Run(BenchmarkOptions options, string directory, Action<string> log)
    {
        Directory.CreateDirectory(directory);
        var targets = options.QualitySteps.Order().ToArray();
        var snapshots = new List<QualitySnapshot>();
        string tag = BenchmarkNetworks.Tag(options);
        var timesPath = System.IO.Path.Combine(directory, $"training-times{tag}.json");
        var known = File.Exists(timesPath) ? Json.Read<List<QualitySnapshot>>(timesPath) ?? [] : [];
        if (targets.All(s => File.Exists(SnapshotPath(directory, s, tag)) && known.Any(k => k.Steps == s)))
        {
            log($"[quality] reusing the snapshots in {directory} (delete them to retrain)");
            return targets.Select(s => known.First(k => k.Steps == s)).ToList();
        }

        using var images = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] labels);
        using var labelTensor = tensor(labels);
        using var conditions = ConditionBatch.Classes(labelTensor);
        using var trainer = new DiffusionTrainer(NetworkOf(options), options: TrainerOptions with { Seed = options.TrainSeed }, device: CPU);
        string statePath = System.IO.Path.Combine(directory, $"fashion-class{tag}.state");
        double seconds = 0;
        if (File.Exists(statePath))
        {
            trainer.LoadState(statePath);
            seconds = known.Where(k => k.Steps <= trainer.StepsDone).Select(k => k.TrainingSeconds).DefaultIfEmpty(0).Max();
            snapshots.AddRange(known.Where(k => k.Steps <= trainer.StepsDone && File.Exists(k.Path)));
            log($"[quality] resumed at step {trainer.StepsDone}");
        }
        log($"[quality] training a class-conditional {options.Network} model (seed {options.TrainSeed}) on {labels.Length} Fashion-MNIST images to steps {string.Join(", ", targets)}");
        var clock = new Stopwatch();
        foreach (int target in targets)
        {
            if (trainer.StepsDone >= target) continue;
            clock.Restart();
            double lastLoss = double.NaN;
            trainer.Train(images, (int)(target - trainer.StepsDone), p =>
            {
                lastLoss = p.Loss;
                log($"[quality] step {p.Step,5}/{p.TotalSteps}  loss {p.Loss:F4}  {p.StepsPerSecond:F2} steps/s");
            }, reportEvery: 100, conditions: conditions);
            seconds += clock.Elapsed.TotalSeconds;
            string path = SnapshotPath(directory, target, tag);
            using (var model = trainer.ToModel()) model.Save(path);
            trainer.SaveState(statePath);
            snapshots.Add(new QualitySnapshot(target, seconds, target * ReferenceSecondsPerStep / 60, lastLoss, path));
            Json.Write(timesPath, snapshots);
            log($"[quality] step {target}: {seconds / 60:F1} min of training so far → {path}");
        }
        return snapshots;
    }
}
