using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>One sampler at one budget of network evaluations: the steps it was given, the evaluations it made, and the scores.</summary>
internal sealed record SweepCell(string Sampler, int TargetEvaluations, int Steps, int Evaluations, double FrechetDistance,
    double Precision, double Recall, double ClassAccuracy, double Seconds);

internal sealed record SweepReport(string Timestamp, VersionsInfo Versions, int ModelSteps, double Guidance, int Images, int ReferenceImages,
    double FloorFrechetDistance, SweepCell[] Cells);

/// <summary>
/// Fréchet distance against the number of network evaluations (NFE) for every registered sampler, on the last snapshot of
/// the Fashion-MNIST quality study and the same class-balanced seeds for every cell. A sampler is given the most steps
/// whose evaluations fit the budget (Heun evaluates twice per step but the last); the evaluations actually made are
/// counted. Cells are kept in a JSON file as they finish, so a stopped sweep resumes where it was.
/// </summary>
internal static class SamplerSweep
{
    public static SweepReport Run(BenchmarkOptions options, VersionsInfo versions, string directory, QualitySnapshot snapshot, Action<string> log)
    {
        using var train = FashionMnist.LoadTensor(FashionMnistSplit.Train, out long[] trainLabels);
        using var test = FashionMnist.LoadTensor(FashionMnistSplit.Test, out long[] testLabels);
        var classifierResult = FashionQualityEvaluation.TrainOrLoadClassifier(options, directory, train, trainLabels, test, testLabels, log);
        using var classifier = ImageClassifier.Load(classifierResult.Path);
        using var reference = train.narrow(0, 0, FashionQualityEvaluation.ReferenceImages);
        using var evaluator = classifier.CreateQualityEvaluator(reference);

        int perClass = options.SweepSamples / FashionMnist.ClassCount, count = perClass * FashionMnist.ClassCount;
        var intended = Enumerable.Range(0, count).Select(i => (long)(i % FashionMnist.ClassCount)).ToArray();
        var seeds = Enumerable.Range(0, count).Select(i => (long)i).ToArray();
        double floor;
        using (var floorImages = ClassInterleavedImages.Select(test, testLabels, FashionMnist.ClassCount, perClass))
            floor = evaluator.Evaluate(floorImages, intended).FrechetDistance;
        log($"[sweep] floor (real test images, {count}): FD {floor:F3}");

        // The network's tag keeps cells of different snapshots with the same step count apart.
        string cellsPath = Path.Combine(directory, $"sampler-sweep{BenchmarkNetworks.Tag(options)}-{snapshot.Steps}-w{options.SweepGuidance:0.#}-n{count}.json");
        var cells = File.Exists(cellsPath) ? Json.Read<List<SweepCell>>(cellsPath) ?? [] : [];
        using var model = DiffusionModel.Load(snapshot.Path, CPU);
        foreach (var (sampler, target) in options.SweepReportOnly ? [] : Order(options.SweepEvaluations))
        {
            if (cells.Any(c => c.Sampler == sampler && c.TargetEvaluations == target)) continue;
            int steps = sampler == "heun" ? (target + 1) / 2 : target;
            var generation = new GenerationOptions { Sampler = sampler, Steps = steps, GuidanceScale = options.SweepGuidance };
            var clock = Stopwatch.StartNew();
            using var images = Generate(model, generation, seeds, intended, out int evaluations);
            double seconds = clock.Elapsed.TotalSeconds;
            var report = evaluator.Evaluate(images, intended);
            cells.Add(new SweepCell(sampler, target, steps, evaluations, report.FrechetDistance, report.Precision, report.Recall, report.ClassAccuracy!.Value, seconds));
            Json.Write(cellsPath, cells);
            log($"[sweep] {sampler,-16} {steps,4} steps = {evaluations,4} NFE: FD {report.FrechetDistance:F2}, precision {report.Precision:P1}, recall {report.Recall:P1}, class accuracy {report.ClassAccuracy:P1} ({seconds:F0} s)");
        }
        return new SweepReport(DateTimeOffset.UtcNow.ToString("O"), versions, snapshot.Steps, options.SweepGuidance, count,
            FashionQualityEvaluation.ReferenceImages, floor, [.. cells.OrderBy(c => c.Sampler, StringComparer.Ordinal).ThenBy(c => c.TargetEvaluations)]);
    }

    // Small budgets first for every sampler, then DDPM's full chain (the reference), then the other samplers' large budgets:
    // a sweep stopped early has the most useful part of the table.
    private static IEnumerable<(string Sampler, int Target)> Order(int[] targets)
    {
        var samplers = DiffusionSamplers.Names.ToArray();
        int largest = targets.Max();
        foreach (int target in targets.Where(t => t < largest).Order())
            foreach (var s in samplers) yield return (s, target);
        yield return ("ddpm", largest);
        foreach (var s in samplers.Where(s => s != "ddpm")) yield return (s, largest);
    }

    private static Tensor Generate(DiffusionModel model, GenerationOptions generation, long[] seeds, long[] classes, out int evaluations)
    {
        const int batch = 125;
        var parts = new List<Tensor>();
        int counted = 0;
        try
        {
            for (int start = 0; start < seeds.Length; start += batch)
            {
                int size = Math.Min(batch, seeds.Length - start);
                using var labels = tensor(classes.AsSpan(start, size).ToArray());
                using var condition = ConditionBatch.Classes(labels);
                parts.Add(model.Generate(generation, seeds.AsSpan(start, size).ToArray(), onStep: (_, total) => counted = total, condition: condition));
            }
            evaluations = counted;
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>The table (FD per sampler and NFE) and, per sampler, the fewest evaluations within 10 % of DDPM's full chain.</summary>
    public static string Markdown(SweepReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var targets = r.Cells.Select(c => c.TargetEvaluations).Distinct().Order().ToArray();
        var reference = r.Cells.FirstOrDefault(c => c.Sampler == "ddpm" && c.TargetEvaluations == targets.Max());
        var b = new StringBuilder();
        b.AppendLine(inv, $"Fréchet distance ↓ by network evaluations (NFE), class-conditional Fashion-MNIST model after {r.ModelSteps:N0} steps, guidance {r.Guidance:0.#},");
        b.AppendLine(inv, $"{r.Images} images per cell (same seeds and classes in every cell), classifier features, {r.ReferenceImages:N0} training images as reference; floor (real test images) {r.FloorFrechetDistance:F2}.");
        b.AppendLine();
        b.AppendLine("| sampler | " + string.Join(" | ", targets.Select(t => t.ToString(inv))) + " | fewest NFE within 10 % of DDPM-" + targets.Max() + " |");
        b.AppendLine("| --- |" + string.Concat(targets.Select(_ => " ---: |")) + " ---: |");
        foreach (var sampler in r.Cells.Select(c => c.Sampler).Distinct())
        {
            var row = targets.Select(t => r.Cells.FirstOrDefault(c => c.Sampler == sampler && c.TargetEvaluations == t)).ToArray();
            string Cell(SweepCell? c) => c is null ? "–" : c.Evaluations == c.TargetEvaluations ? c.FrechetDistance.ToString("F2", inv) : $"{c.FrechetDistance.ToString("F2", inv)} ({c.Evaluations})";
            string fewest = reference is null ? "(DDPM-" + targets.Max() + " not run yet)"
                : row.Where(c => c is not null && c.FrechetDistance <= 1.1 * reference.FrechetDistance).Select(c => c!.Evaluations).DefaultIfEmpty(-1).Min() is int n && n > 0
                    ? n.ToString(inv) : "none measured";
            b.AppendLine($"| {sampler} | {string.Join(" | ", row.Select(Cell))} | {fewest} |");
        }
        if (reference is not null)
            b.AppendLine().AppendLine(inv, $"DDPM-{reference.Evaluations}: FD {reference.FrechetDistance:F2}; within 10 % means FD ≤ {1.1 * reference.FrechetDistance:F2}. Heun's budgets hold 2N − 1 evaluations (shown in brackets where that is below the column's).");
        return b.ToString();
    }
}
