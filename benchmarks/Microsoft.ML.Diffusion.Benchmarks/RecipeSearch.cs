using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.Imaging;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Training;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>A training recipe of the search: trainer options and schedule on top of the bench configuration.</summary>
internal sealed record TrainingRecipe(string Name, string Description, DiffusionTrainerOptions Trainer, NoiseScheduleOptions Schedule);

/// <summary>One recipe's score after some training steps.</summary>
internal sealed record RecipeCell(string Recipe, int Steps, double TrainingSeconds, double FrechetDistance, double Precision, double Recall, double SamplingSeconds);

/// <summary>One recipe's training-step time, measured round-robin against the others.</summary>
internal sealed record RecipeTiming(string Recipe, double MedianSecondsPerStep, double RelativeToPlain);

internal sealed record RecipeReport(string Timestamp, VersionsInfo Versions, int Images, int ReferenceImages, double FloorFrechetDistance,
    RecipeCell[] Cells, RecipeTiming[] Timings, RecipeCell[] OnOtherSeeds);

/// <summary>
/// The training-recipe search: unconditional models of the bench configuration (1×28×28, channels 32/64/64, attention
/// at 7×7, batch 64, AdamW, EMA, horizontal flips; diffusers' UNet2DModel, TrainDiffusion's default) trained on the 60,000 Fashion-MNIST training images with each recipe
/// and the same seed, scored after each step count by Fréchet distance, precision and recall of DDIM-50 samples in the
/// quality study's classifier features. Trainings resume from state files and scores are kept as they finish, so a
/// stopped search goes on where it was. Every recipe's step time is measured round-robin with the others at the end,
/// so a slower machine or a busy core slows them all alike.
/// </summary>
internal static class RecipeSearch
{
    private static readonly GenerationOptions Sampling = new() { Sampler = SamplerName.Ddim, Steps = 50 };

    /// <summary>The bench shape, unconditional; --network picks the family.</summary>
    public static UNetOptions Shape => FashionQualityTraining.Network with { Condition = new() };

    /// <summary>The recipe every other is measured against: plain DDPM training (ε target, uniform weighting) with AdamW 2e-4 after 100 warm-up steps and EMA 0.999.</summary>
    private static DiffusionTrainerOptions Baseline => new() { BatchSize = 64, LearningRate = 2e-4, LearningRateDecay = LearningRateDecay.Constant, MinSnrGamma = null, EmaDecay = 0.999, RandomHorizontalFlip = true, Seed = 1 };

    /// <summary>The name of the baseline recipe.</summary>
    public const string Plain = "plain";

    public static IReadOnlyList<TrainingRecipe> All(int decaySteps) =>
    [
        new(Plain, "ε, uniform weighting, constant learning rate 2e-4, EMA 0.999", Baseline, new()),
        new("min-snr-5", "ε, Min-SNR-5 weighting", Baseline with { MinSnrGamma = 5 }, new()),
        new("lr-5e-4-cosine", "ε, peak learning rate 5e-4, cosine decay to 0", Baseline with { LearningRate = 5e-4, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps }, new()),
        new("v-min-snr-5", "v target, Min-SNR-5 weighting", Baseline with { Prediction = PredictionType.VPrediction, MinSnrGamma = 5 }, new()),
        new("ema-0.995", "ε, EMA 0.995", Baseline with { EmaDecay = 0.995 }, new()),
        new("cosine-lr", "ε, cosine decay of 2e-4 to 0", Baseline with { LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps }, new()),
        new("v-ztsnr", "v target, zero-terminal-SNR schedule", Baseline with { Prediction = PredictionType.VPrediction }, new() { ZeroTerminalSnr = true }),
        new("offset-noise", "ε, offset noise 0.1", Baseline with { OffsetNoise = 0.1 }, new()),
        new("lr-5e-4-cosine-min-snr-5", "ε, Min-SNR-5, peak learning rate 5e-4, cosine decay", Baseline with { LearningRate = 5e-4, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-1e-3-cosine", "ε, peak learning rate 1e-3, cosine decay to 0", Baseline with { LearningRate = 1e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps }, new()),
        new("lr-2e-3-cosine", "ε, peak learning rate 2e-3, cosine decay to 0", Baseline with { LearningRate = 2e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps }, new()),
        new("lr-1e-3-cosine-min-snr-5", "ε, Min-SNR-5, peak learning rate 1e-3, cosine decay", Baseline with { LearningRate = 1e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-2e-3-cosine-min-snr-5", "ε, Min-SNR-5, peak learning rate 2e-3, cosine decay", Baseline with { LearningRate = 2e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-4e-3-cosine-min-snr-5", "ε, Min-SNR-5, peak learning rate 4e-3, cosine decay", Baseline with { LearningRate = 4e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-2e-3-cosine-v-min-snr-5", "v target, Min-SNR-5, peak learning rate 2e-3, cosine decay", Baseline with { Prediction = PredictionType.VPrediction, LearningRate = 2e-3, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-5e-4-cosine-v-min-snr-5", "v target, Min-SNR-5, peak learning rate 5e-4, cosine decay", Baseline with { Prediction = PredictionType.VPrediction, LearningRate = 5e-4, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, MinSnrGamma = 5 }, new()),
        new("lr-5e-4-cosine-ema-0.995", "ε, peak learning rate 5e-4, cosine decay, EMA 0.995", Baseline with { LearningRate = 5e-4, LearningRateDecay = LearningRateDecay.Cosine, DecaySteps = decaySteps, EmaDecay = 0.995 }, new()),
    ];

    public static RecipeReport Run(BenchmarkOptions options, VersionsInfo versions, string qualityDirectory, string directory, Action<string> log)
    {
        Directory.CreateDirectory(directory);
        var targets = options.RecipeSteps.Order().ToArray();
        // A screening run stops at an earlier count; decaying learning rates keep the last count as their horizon.
        if (options.RecipeStopAt is { } stop && !targets.Contains(stop))
            throw new ArgumentException($"--recipe-stop-at {stop} is not one of the step counts ({string.Join(", ", targets)}).");
        var trained = targets.Where(s => s <= (options.RecipeStopAt ?? int.MaxValue)).ToArray();
        var network = BenchmarkNetworks.For(options.Network, Shape);
        var recipes = All(targets.Max()).Select(r => r with { Trainer = r.Trainer with { Seed = options.TrainSeed } }).ToList();
        var chosen = options.Recipes is { } names
            ? names.Select(n => recipes.FirstOrDefault(r => r.Name == n) ?? throw new ArgumentException($"Unknown recipe '{n}'; known: {string.Join(", ", recipes.Select(r => r.Name))}.")).ToList()
            : recipes.ToList();

        using var train = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] trainLabels);
        using var test = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] testLabels);
        var classifierResult = FashionQualityEvaluation.TrainOrLoadClassifier(options, qualityDirectory, train, trainLabels, test, testLabels, log);
        using var classifier = ImageClassifier.Load(classifierResult.Path);
        using var reference = train.narrow(0, 0, FashionQualityEvaluation.ReferenceImages);
        using var evaluator = classifier.CreateQualityEvaluator(reference);
        int count = options.RecipeSamples;
        double floor;
        using (var floorImages = test.narrow(0, 0, count)) floor = evaluator.Evaluate(floorImages).FrechetDistance;
        log($"[recipes] floor (the first {count} real test images): FD {floor:F3}");

        // One file of cells per recipe, so that several processes can each run their own recipes into the same folder.
        string CellsPath(TrainingRecipe recipe) => Path.Combine(directory, $"{recipe.Name}-cells-n{count}.json");
        var cells = recipes.Where(r => File.Exists(CellsPath(r))).SelectMany(r => Json.Read<List<RecipeCell>>(CellsPath(r)) ?? []).ToList();
        var seeds = Enumerable.Range(0, count).Select(i => (long)i).ToArray();

        // Every recipe to the last step count first, scoring that snapshot; the earlier snapshots are scored after all of them.
        foreach (var recipe in chosen)
        {
            TrainTo(network, recipe, trained, train, directory, log);
            Score(recipe, trained.Max());
        }
        foreach (var recipe in chosen)
            foreach (int steps in trained.Where(s => s < trained.Max()))
                Score(recipe, steps);

        void Score(TrainingRecipe recipe, int steps)
        {
            if (cells.Any(c => c.Recipe == recipe.Name && c.Steps == steps)) return;
            var times = Json.Read<Dictionary<int, double>>(TimesPath(directory, recipe))!;
            var (report, seconds) = SampleAndScore(recipe, steps, seeds);
            cells.Add(new RecipeCell(recipe.Name, steps, times[steps], report.FrechetDistance, report.Precision, report.Recall, seconds));
            Json.Write(CellsPath(recipe), cells.Where(c => c.Recipe == recipe.Name).ToList());
            log($"[recipes] {recipe.Name} after {steps} steps: FD {report.FrechetDistance:F2}, precision {report.Precision:P1}, recall {report.Recall:P1} ({seconds:F0} s to sample)");
        }

        (SampleQualityReport Report, double Seconds) SampleAndScore(TrainingRecipe recipe, int steps, long[] sampleSeeds)
        {
            using var model = DiffusionModel.Load(SnapshotPath(directory, recipe, steps), CPU);
            var clock = Stopwatch.StartNew();
            using var images = Generate(model, sampleSeeds);
            double seconds = clock.Elapsed.TotalSeconds;
            return (evaluator.Evaluate(images), seconds);
        }

        // The first 64 seeds of each recipe's last snapshot: the same images as the first 64 scored ones.
        if (options.GridDirectory is { } grids)
        {
            Directory.CreateDirectory(grids);
            foreach (var recipe in recipes)
            {
                int last = targets.OrderDescending().FirstOrDefault(s => File.Exists(SnapshotPath(directory, recipe, s)));
                string gridPath = Path.Combine(grids, $"recipe-{recipe.Name}-{last}.png");
                if (last == 0 || File.Exists(gridPath)) continue;
                using var model = DiffusionModel.Load(SnapshotPath(directory, recipe, last), CPU);
                using var images = Generate(model, seeds[..Math.Min(64, count)]);
                ImageGrid.SavePng(images, gridPath, columns: 8, scale: 2);
            }
        }

        // Last snapshots on the next `count` seeds: how far FD moves with the samples alone. The plain recipe's always,
        // the chosen ones' with --recipe-second-seeds.
        string OtherSeedsPath(TrainingRecipe recipe) => Path.Combine(directory, $"{recipe.Name}-other-seeds-n{count}.json");
        var otherSeedSets = options.RecipeSecondSeeds ? chosen.Prepend(recipes[0]).Distinct() : [recipes[0]];
        foreach (var recipe in otherSeedSets)
        {
            if (File.Exists(OtherSeedsPath(recipe)) || !File.Exists(SnapshotPath(directory, recipe, targets.Max()))) continue;
            var (report, seconds) = SampleAndScore(recipe, targets.Max(), seeds.Select(s => s + count).ToArray());
            Json.Write(OtherSeedsPath(recipe), new RecipeCell(recipe.Name, targets.Max(), 0, report.FrechetDistance, report.Precision, report.Recall, seconds));
            log($"[recipes] {recipe.Name} after {targets.Max()} steps on seeds {count}…{2 * count - 1}: FD {report.FrechetDistance:F2}, precision {report.Precision:P1}, recall {report.Recall:P1}");
        }
        var otherSeeds = recipes.Where(r => File.Exists(OtherSeedsPath(r))).Select(r => Json.Read<RecipeCell>(OtherSeedsPath(r))!).ToArray();

        string timingsPath = Path.Combine(directory, "recipe-timings.json");
        var timings = File.Exists(timingsPath) ? Json.Read<List<RecipeTiming>>(timingsPath) ?? [] : [];
        // Every recipe with a score is timed (the plain one always), whichever process trained it.
        var timed = recipes.Where(r => r.Name == Plain || File.Exists(CellsPath(r))).ToList();
        if (options.RecipeTimingSteps > 0 && timed.Any(r => timings.All(t => t.Recipe != r.Name)))
        {
            timings = TimeSteps(network, timed, train, options.RecipeTimingSteps, log);
            Json.Write(timingsPath, timings);
        }
        cells = recipes.Where(r => File.Exists(CellsPath(r))).SelectMany(r => Json.Read<List<RecipeCell>>(CellsPath(r)) ?? []).ToList();
        return new RecipeReport(DateTimeOffset.UtcNow.ToString("O"), versions, count, FashionQualityEvaluation.ReferenceImages, floor,
            [.. cells.OrderBy(c => recipes.ToList().FindIndex(r => r.Name == c.Recipe)).ThenBy(c => c.Steps)], [.. timings], otherSeeds);
    }

    private static string SnapshotPath(string directory, TrainingRecipe recipe, int steps) => Path.Combine(directory, $"{recipe.Name}-{steps:D5}.mldiff");
    private static string TimesPath(string directory, TrainingRecipe recipe) => Path.Combine(directory, $"{recipe.Name}-times.json");

    private static void TrainTo(NoisePredictorOptions network, TrainingRecipe recipe, int[] targets, Tensor images, string directory, Action<string> log)
    {
        string timesPath = TimesPath(directory, recipe);
        var times = File.Exists(timesPath) ? Json.Read<Dictionary<int, double>>(timesPath) ?? [] : [];
        if (targets.All(s => File.Exists(SnapshotPath(directory, recipe, s)) && times.ContainsKey(s))) return;

        using var trainer = new DiffusionTrainer(network, recipe.Schedule, recipe.Trainer, CPU);
        string statePath = Path.Combine(directory, $"{recipe.Name}.state");
        double seconds = 0;
        if (File.Exists(statePath))
        {
            trainer.LoadState(statePath);
            seconds = times.Where(t => t.Key <= trainer.StepsDone).Select(t => t.Value).DefaultIfEmpty(0).Max();
            log($"[recipes] {recipe.Name}: resumed at step {trainer.StepsDone}");
        }
        log($"[recipes] {recipe.Name} ({recipe.Description}): training to steps {string.Join(", ", targets)}");
        var clock = new Stopwatch();
        const int chunk = 250;   // the state is saved this often, so a stopped session loses little
        foreach (int target in targets)
        {
            while (trainer.StepsDone < target)
            {
                int steps = (int)Math.Min(chunk, target - trainer.StepsDone);
                clock.Restart();
                trainer.Train(images, steps, p => log($"[recipes] {recipe.Name} step {p.Step,5}  loss {p.Loss:F4}  {p.StepsPerSecond:F2} steps/s"), reportEvery: 250);
                seconds += clock.Elapsed.TotalSeconds;
                trainer.SaveState(statePath);
                times[(int)trainer.StepsDone] = seconds;
                Json.Write(timesPath, times);
            }
            if (File.Exists(SnapshotPath(directory, recipe, target)) && times.ContainsKey(target)) continue;
            if (trainer.StepsDone > target)
            {
                times[target] = RetrainSnapshot(network, recipe, target, images, directory, log);   // resumed past a target whose snapshot is missing
                Json.Write(timesPath, times);
                continue;
            }
            using (var model = trainer.ToModel()) model.Save(SnapshotPath(directory, recipe, target));
            times[target] = seconds;
            Json.Write(timesPath, times);
            log($"[recipes] {recipe.Name}: step {target} after {seconds / 60:F1} min of training");
        }
    }

    // The same seed gives the same model, so a snapshot a resumed run went past is trained again from the start.
    private static double RetrainSnapshot(NoisePredictorOptions network, TrainingRecipe recipe, int target, Tensor images, string directory, Action<string> log)
    {
        log($"[recipes] {recipe.Name}: training step {target}'s snapshot again from the start");
        using var trainer = new DiffusionTrainer(network, recipe.Schedule, recipe.Trainer, CPU);
        var clock = Stopwatch.StartNew();
        trainer.Train(images, target, p => log($"[recipes] {recipe.Name} (again) step {p.Step,5}  loss {p.Loss:F4}  {p.StepsPerSecond:F2} steps/s"), reportEvery: 250);
        using (var model = trainer.ToModel()) model.Save(SnapshotPath(directory, recipe, target));
        return clock.Elapsed.TotalSeconds;
    }

    private static Tensor Generate(DiffusionModel model, long[] seeds)
    {
        const int batch = 125;
        var parts = new List<Tensor>();
        try
        {
            for (int start = 0; start < seeds.Length; start += batch)
                parts.Add(model.Generate(Sampling, seeds.AsSpan(start, Math.Min(batch, seeds.Length - start)).ToArray()));
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    // Each recipe trains `steps` steps per round, the recipes taking turns for five rounds; the median round gives the step time.
    private static List<RecipeTiming> TimeSteps(NoisePredictorOptions network, IReadOnlyList<TrainingRecipe> recipes, Tensor images, int steps, Action<string> log)
    {
        var trainers = recipes.Select(r => new DiffusionTrainer(network, r.Schedule, r.Trainer, CPU)).ToList();
        try
        {
            foreach (var t in trainers) t.Train(images, 2);
            var rounds = recipes.Select(_ => new List<double>()).ToList();
            for (int round = 0; round < 5; round++)
                for (int i = 0; i < trainers.Count; i++)
                {
                    var clock = Stopwatch.StartNew();
                    trainers[i].Train(images, steps);
                    rounds[i].Add(clock.Elapsed.TotalSeconds / steps);
                }
            double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
            double baseline = Median(rounds[recipes.ToList().FindIndex(r => r.Name == Plain)]);
            var result = recipes.Select((r, i) => new RecipeTiming(r.Name, Median(rounds[i]), Median(rounds[i]) / baseline)).ToList();
            foreach (var t in result) log($"[recipes] {t.Recipe}: {t.MedianSecondsPerStep * 1000:F0} ms/step ({t.RelativeToPlain:F3}× plain)");
            return result;
        }
        finally
        {
            foreach (var t in trainers) t.Dispose();
        }
    }

    public static string Markdown(RecipeReport r, IReadOnlyList<TrainingRecipe> recipes)
    {
        var inv = CultureInfo.InvariantCulture;
        var steps = r.Cells.Select(c => c.Steps).Distinct().Order().ToArray();
        var b = new StringBuilder();
        b.AppendLine(inv, $"Unconditional bench network on Fashion-MNIST; DDIM-50, {r.Images:N0} images per cell (seeds 0…{r.Images - 1}), classifier features,");
        b.AppendLine(inv, $"{r.ReferenceImages:N0} training images as reference; floor ({r.Images:N0} real test images) {r.FloorFrechetDistance:F2}.");
        b.AppendLine();
        b.Append("| recipe |");
        foreach (int s in steps) b.Append(inv, $" FD @ {s:N0} | precision @ {s:N0} | recall @ {s:N0} |");
        b.AppendLine(" FD vs plain at the last count | step time vs plain |");
        b.Append("| --- |");
        foreach (int _ in steps) b.Append(" ---: | ---: | ---: |");
        b.AppendLine(" ---: | ---: |");
        var baseline = r.Cells.FirstOrDefault(x => x.Recipe == Plain && x.Steps == steps.LastOrDefault());
        foreach (var name in r.Cells.Select(c => c.Recipe).Distinct())
        {
            var recipe = recipes.FirstOrDefault(x => x.Name == name);
            b.Append(inv, $"| {name}{(recipe is null ? "" : $" ({recipe.Description})")} |");
            foreach (int s in steps)
            {
                var c = r.Cells.FirstOrDefault(x => x.Recipe == name && x.Steps == s);
                b.Append(c is null ? " – | – | – |" : string.Create(inv, $" {c.FrechetDistance:F2} | {c.Precision:P1} | {c.Recall:P1} |"));
            }
            var last = r.Cells.FirstOrDefault(x => x.Recipe == name && x.Steps == steps.LastOrDefault());
            b.Append(last is null || baseline is null ? " – |" : string.Create(inv, $" {last.FrechetDistance / baseline.FrechetDistance:F2}× |"));
            var t = r.Timings.FirstOrDefault(x => x.Recipe == name);
            b.AppendLine(t is null ? " – |" : string.Create(inv, $" {t.RelativeToPlain:F3}× |"));
        }
        if (r.OnOtherSeeds.Length > 0)
        {
            int last = r.OnOtherSeeds[0].Steps;
            b.AppendLine();
            b.AppendLine(inv, $"After {last:N0} steps, on the first {r.Images:N0} seeds and on the next {r.Images:N0} ({r.Images}…{2 * r.Images - 1}):");
            b.AppendLine();
            b.AppendLine("| recipe | FD, seeds 0… | FD, next seeds | mean FD | mean vs plain | precision, next seeds | recall, next seeds |");
            b.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            RecipeCell? First(RecipeCell o) => r.Cells.FirstOrDefault(c => c.Recipe == o.Recipe && c.Steps == o.Steps);
            double? Mean(RecipeCell o) => First(o) is { } first ? (first.FrechetDistance + o.FrechetDistance) / 2 : null;
            var plainMean = r.OnOtherSeeds.FirstOrDefault(o => o.Recipe == Plain) is { } p ? Mean(p) : null;
            foreach (var o in r.OnOtherSeeds)
            {
                var first = First(o);
                var mean = Mean(o);
                b.AppendLine(string.Create(inv, $"| {o.Recipe} | {(first is null ? "–" : first.FrechetDistance.ToString("F2", inv))} | {o.FrechetDistance:F2} | {(mean is { } m ? m.ToString("F2", inv) : "–")} | {(mean is { } m2 && plainMean is { } pm ? (m2 / pm).ToString("F2", inv) + "×" : "–")} | {o.Precision:P1} | {o.Recall:P1} |"));
            }
        }
        return b.ToString();
    }
}
