using System.Globalization;
using System.Text;
using Microsoft.ML.Diffusion.Benchmarks;
using Microsoft.ML.Diffusion.Devices;
using TorchSharp;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

BenchmarkOptions options;
try
{
    options = BenchmarkOptions.Parse(args);
}
catch (HelpRequestedException)
{
    Console.WriteLine(BenchmarkOptions.Usage);
    return 0;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}\n\n{BenchmarkOptions.Usage}");
    return 2;
}

static void Log(string message) => Console.Error.WriteLine(message);

DiffusionDevice.Resolve("cpu");   // loads libtorch, sets its threads and tunes the allocator the way the library does
if (options.Threads is int threads) torch.set_num_threads(threads);
var versions = RuntimeInfo.Collect();
Log($"TorchSharp {versions.FrameworkVersion}, {versions.Libtorch}, {versions.Runtime}, torch threads {versions.TorchThreads}, {versions.Cpu} x{versions.LogicalCores}");
Directory.CreateDirectory(options.OutputDirectory);

if (options.Serve) return LockstepServer.Run(options, Log);

// Before sd-components: --sd-size is shared and would select it.
if (options.LoraCostAll) return LoraCostDriver.Run(options, Log);
if (options.LoraCost) return LoraCost.Run(options, Log);

if (options.SdComponents) return SdComponents.Run(options.SdComponentNames, options.SdSize, options.SdDtype, options.Repeats, Log);

if (options.Ops)
{
    var ops = OpBenchmark.Run(options.Quick ? 5 : 20, Log);
    string path = Path.Combine(options.OutputDirectory, "torchsharp-ops.json");
    Json.Write(path, new { Implementation = "TorchSharp", Versions = versions, Ops = ops });
    Log($"wrote {path}");
    return 0;
}

if (options.Overhead)
{
    var r = GenerateOverhead.Run(options, Log);
    Json.Write(Path.Combine(options.OutputDirectory, "generate-overhead.json"), r);
    Console.WriteLine("| images | batch | sampler | direct (s) | DiffusionGenerate (s) | overhead |");
    Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
    Console.WriteLine($"| {r.Images} | {r.Batch} | {r.Sampler} {r.Steps} | {r.DirectSeconds:F2} | {r.PipelineSeconds:F2} | {r.OverheadPercent:+0.0;-0.0} % |");
    return 0;
}

if (options.Serving)
{
    var rows = ServingLoad.Run(options, Log);
    Json.Write(Path.Combine(options.OutputDirectory, "serving.json"), rows);
    string servingMarkdown = ServingLoad.Markdown(rows);
    File.WriteAllText(Path.Combine(options.OutputDirectory, "serving.md"), servingMarkdown);
    Console.Write(servingMarkdown);
    return 0;
}

if (options.ServingSoak)
{
    var soak = ServingSoak.Run(options, Log);
    Json.Write(Path.Combine(options.OutputDirectory, "serving-soak.json"), soak);
    string soakMarkdown = ServingSoak.Markdown(soak);
    File.WriteAllText(Path.Combine(options.OutputDirectory, "serving-soak.md"), soakMarkdown);
    Console.Write(soakMarkdown);
    return soak.Flat ? 0 : 1;
}

if (options.ForwardBatches)
{
    ForwardBatchScaling.Run(options, Log);
    return 0;
}

if (options.SamplerSweep)
{
    string dir = Path.Combine(options.OutputDirectory, "quality");
    var snapshot = FashionQualityTraining.Run(options, dir, Log).MaxBy(s => s.Steps)!;
    var sweep = SamplerSweep.Run(options, versions, dir, snapshot, Log);
    Json.Write(Path.Combine(options.OutputDirectory, "sampler-sweep.json"), sweep);
    string sweepMarkdown = SamplerSweep.Markdown(sweep);
    File.WriteAllText(Path.Combine(options.OutputDirectory, "sampler-sweep.md"), sweepMarkdown);
    if (options.GridDirectory is not null) SweepPlot.Save(sweep, Path.Combine(options.GridDirectory, "sampler-sweep.png"));
    Console.Write(sweepMarkdown);
    return 0;
}

if (options.RecipeSearch)
{
    string tag = BenchmarkNetworks.Tag(options);
    var recipes = RecipeSearch.Run(options, versions, Path.Combine(options.OutputDirectory, "quality"), Path.Combine(options.OutputDirectory, "recipes" + tag), Log);
    Json.Write(Path.Combine(options.OutputDirectory, $"training-recipes{tag}.json"), recipes);
    string recipesMarkdown = RecipeSearch.Markdown(recipes, RecipeSearch.All(options.RecipeSteps.Max()));
    File.WriteAllText(Path.Combine(options.OutputDirectory, $"training-recipes{tag}.md"), recipesMarkdown);
    Console.Write(recipesMarkdown);
    return 0;
}

if (options.DiffusersFolder is { } diffusersFolder)
{
    var r = DiffusersSampling.Run(diffusersFolder, options.SampleBatch ?? 64, options.DiffusersSteps, options.DiffusersRepeats, Log);
    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { median_seconds = r.MedianSeconds, seconds = r.Seconds, parameters = r.Parameters }));
    return 0;
}

if (options.WeightsMemory)
{
    var r = WeightsLoadMemory.Run(options.WeightsGigabytes, options.WeightsReader, options.OutputDirectory, options.WeightsKeepFile, Log);
    Json.Write(Path.Combine(options.OutputDirectory, $"weights-memory-{r.Reader}.json"), r);
    Console.WriteLine("| reader | file | tensors | RSS before the module | module | peak RSS | (peak − before) / file size | seconds |");
    Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    Console.WriteLine($"| {r.Reader} | {r.FileBytes / (double)(1L << 30):F2} GiB | {r.Tensors} | {r.BaselineMiB:F0} MiB | {r.ModuleMiB:F0} MiB | {r.PeakMiB:F0} MiB | {r.PeakOverSize:F3}× | {r.Seconds:F1} |");
    return 0;
}

if (options.Streaming)
{
    var streaming = StreamingBenchmark.Run(options, Log);
    Json.Write(Path.Combine(options.OutputDirectory, "streaming.json"), streaming);
    Console.WriteLine("| measurement | result |");
    Console.WriteLine("| --- | --- |");
    if (streaming.Memory is { } m)
        Console.WriteLine($"| {m.Steps} steps of {m.Batch} on a lazy view of {m.Rows:N0} rows of 3×64×64 | peak RSS {m.PeakResidentMiB:F0} MiB, {m.RowsRead:N0} rows read, {m.Seconds:F0} s |");
    foreach (var r in streaming.FashionMnist)
        Console.WriteLine($"| Fashion-MNIST, bench network, {r.Loading} | {r.SecondsPerStep * 1000:F1} ms/step, waiting for data {r.DataWaitFraction:P2} |");
    if (streaming.StreamedOverInMemory is { } ratio)
        Console.WriteLine($"| Fashion-MNIST streamed / in memory | {ratio:F3}× |");
    if (streaming.Folder is { } f)
    {
        Console.WriteLine($"| {f.Files:N0} PNG files, LoadImages alone, one thread | {f.DecodeFilesPerSecond:F0} files/s |");
        Console.WriteLine($"| {f.Files:N0} PNG files, LoadImages, bench network, {f.Steps} steps | {f.FirstBatchWaitSeconds:F2} s waiting for the first batch, then {f.SecondsPerStep * 1000:F1} ms/step, {f.ImagesPerSecond:F0} images/s; waiting for data {f.DataWaitFraction:P2} of the run, {f.DataWaitFractionAfterFirstBatch:P2} after the first batch |");
    }
    return 0;
}

if (options.Quality)
{
    string dir = Path.Combine(options.OutputDirectory, "quality");
    var snapshots = FashionQualityTraining.Run(options, dir, Log);
    if (options.QualityTrainOnly)
    {
        foreach (var s in snapshots) Console.WriteLine($"| {s.Steps} steps | {s.TrainingSeconds / 60:F1} min | loss {s.Loss:F4} | {s.Path} |");
        return 0;
    }
    var quality = FashionQualityEvaluation.Run(options, versions, dir, snapshots, options.GridDirectory, Log);
    string tag = BenchmarkNetworks.Tag(options) + FashionQualityEvaluation.SeedTag(options);
    Json.Write(Path.Combine(options.OutputDirectory, $"fashion-quality{tag}.json"), quality);
    string qualityMarkdown = QualityMarkdown(quality);
    File.WriteAllText(Path.Combine(options.OutputDirectory, $"fashion-quality{tag}.md"), qualityMarkdown);
    Console.Write(qualityMarkdown);
    return 0;
}

if (options.Soak)
{
    var soak = Soak.Run(options, versions, Log);
    string path = Path.Combine(options.OutputDirectory, "torchsharp-soak.json");
    Json.Write(path, soak);
    Console.WriteLine($"| soak | steps | runs | RSS after warm-up (MiB) | RSS at end (MiB) | growth | result |");
    Console.WriteLine($"| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    Console.WriteLine($"| {soak.Network}, batch {soak.Batch} | {soak.TrainSteps} | {soak.SamplingRuns} | {soak.RssAfterWarmupMb:F1} | {soak.RssEndMb:F1} | {soak.GrowthPercent:+0.00;-0.00} % | {(soak.Passed ? "PASS" : $"FAIL (≥ {soak.MaxGrowthPercent} %)")} |");
    Log($"wrote {path}");
    return soak.Passed ? 0 : 1;
}

var results = new List<ConfigResult>();
foreach (var name in options.Configs)
    results.Add(Throughput.Run(BenchmarkConfig.Create(name, options), options, Log));

var report = new BenchmarkReport("TorchSharp", options.Quick ? "quick" : "full", DateTimeOffset.UtcNow.ToString("O"), versions, results.ToArray());
string jsonPath = Path.Combine(options.OutputDirectory, "torchsharp.json");
Json.Write(jsonPath, report);
string markdown = Markdown(report);
string mdPath = Path.Combine(options.OutputDirectory, "torchsharp.md");
File.WriteAllText(mdPath, markdown);
Console.Write(markdown);
Log($"wrote {jsonPath} and {mdPath}");
return 0;

static string Markdown(BenchmarkReport r)
{
    var v = r.Versions;
    var sb = new StringBuilder();
    sb.AppendLine($"### Microsoft.ML.Diffusion on TorchSharp ({r.Mode} run, {r.Timestamp[..19]}Z)");
    sb.AppendLine();
    sb.AppendLine($"TorchSharp {v.FrameworkVersion}, {v.Libtorch}, {v.Runtime}, torch.get_num_threads() = {v.TorchThreads}, {v.Cpu} × {v.LogicalCores} logical cores.");
    sb.AppendLine();
    sb.AppendLine("| config | params | batch | train step (s, median) | DDPM 1000 (s/image) | DDIM 50 (s/image) | DPM-Solver++ 20 (s/image) | peak RSS (MiB) |");
    sb.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    var notes = new List<string>();
    foreach (var c in r.Configs)
    {
        string Cell(string name)
        {
            var s = c.Samplers.First(x => x.Name == name);
            return $"{s.SPerImage:F4}" + (s.Extrapolated ? "*" : "");
        }
        sb.AppendLine($"| {c.Name} ({c.Description}) | {c.Params:N0} | {c.Train.Batch} | {c.Train.Step.MedianS:F3} (n={c.Train.Step.Count}) | {Cell("DDPM 1000")} | {Cell("DDIM 50")} | {Cell("DPM-Solver++ 20")} | {c.PeakRssMb:F0} |");
        foreach (var s in c.Samplers.Where(s => s.Extrapolated))
            notes.Add($"{c.Name} {s.Name}: timed the first {s.TimedSteps} of {s.Steps} steps of the real sampling loop (batch {s.Batch}) and extrapolated.");
        if (c.Note is not null) notes.Add($"{c.Name}: {c.Note}.");
    }
    sb.AppendLine();
    sb.AppendLine("Seconds per image = one sampler run over the batch divided by the batch size. Peak RSS = VmHWM, reset before each configuration.");
    foreach (var n in notes) sb.AppendLine($"\\* {n}  ");
    sb.AppendLine();
    sb.AppendLine("Training-step breakdown (median seconds per step, hand-written copy of TrainStep):");
    sb.AppendLine();
    sb.AppendLine("| config | data | forward | backward | clip | AdamW | EMA | other | total | inference forward |");
    sb.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    foreach (var c in r.Configs)
    {
        if (c.Breakdown is not { } b) continue;
        sb.AppendLine($"| {c.Name} | {b.DataS:F4} | {b.ForwardS:F4} | {b.BackwardS:F4} | {b.ClipS:F4} | {b.OptimizerS:F4} | {b.EmaS:F4} | {b.OtherS:F4} | {b.TotalS:F4} | {b.ForwardInferenceS:F4} |");
    }
    return sb.ToString();
}

static string QualityMarkdown(QualityReport r)
{
    var b = new StringBuilder();
    b.AppendLine($"Fashion-MNIST quality ({r.Sampler}, {r.SamplerSteps} steps, sampling seeds {r.FirstSeed}–{r.LastSeed}; features and class accuracy from the project's CNN classifier,");
    b.AppendLine($"{r.Classifier.Epochs} epochs, test accuracy {r.Classifier.TestAccuracy:P2}; reference: {r.ReferenceImages:N0} training images)");
    b.AppendLine();
    b.AppendLine("| images | training steps | minutes (this run) | minutes (at 0.674 s/step) | guidance | FD ↓ | precision | recall | class accuracy |");
    b.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    foreach (var row in r.Rows)
        b.AppendLine($"| {row.Source} ({row.Images}) | {row.Steps?.ToString() ?? "–"} | {row.TrainingMinutes?.ToString("F1") ?? "–"} | {row.TrainingMinutesAtReferencePace?.ToString("F0") ?? "–"} | {row.Guidance?.ToString("0.#") ?? "–"} | {row.FrechetDistance:F3} | {row.Precision:P1} | {row.Recall:P1} | {row.ClassAccuracy:P1} |");
    return b.ToString();
}
