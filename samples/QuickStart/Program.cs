// Quick start: train a small diffusion model on the built-in shapes data set, generate a grid of
// samples with each sampler, and save the model. Runs in a few minutes on 2 CPU cores.
//
//   dotnet run --project samples/QuickStart -c Release [-- --steps 1500 --out out/quickstart]
using System.Diagnostics;
using Microsoft.ML.Diffusion.Imaging;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Runtime;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Training;

int steps = 1500;
string outDir = Path.Combine("out", "quickstart");
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--steps": steps = int.Parse(args[i + 1]); break;
        case "--out": outDir = args[i + 1]; break;
        default: Console.Error.WriteLine($"Unknown option {args[i]}. Options: --steps N, --out DIR"); return 2;
    }
}
Directory.CreateDirectory(outDir);

var device = DiffusionDevice.Resolve();
Console.WriteLine($"Device: {device}; training {steps} steps on 512 built-in 16×16 shape images.");
using var images = SyntheticShapes.Generate(count: 512, size: 16, seed: 0);
ImageGrid.SavePng(images[..32], Path.Combine(outDir, "training-data.png"), columns: 8, scale: 4);

var network = new UNetOptions
{
    ImageChannels = 1, ImageSize = 16, BaseChannels = 32, ChannelMultipliers = [1, 2], AttentionResolutions = [8],
};
var options = new DiffusionTrainerOptions { BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 100, EmaDecay = 0.995, Seed = 0 };
using var trainer = new DiffusionTrainer(network, options: options, device: device);
var clock = Stopwatch.StartNew();
trainer.Train(images, steps, p => Console.WriteLine($"step {p.Step,5}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:E1}  {p.StepsPerSecond:F1} steps/s"), reportEvery: 100);
Console.WriteLine($"Trained in {clock.Elapsed.TotalSeconds:F0} s.");

using var model = trainer.ToModel();
string modelPath = Path.Combine(outDir, "shapes.mldiff");
model.Save(modelPath);

var seeds = Enumerable.Range(0, 32).Select(i => (long)i).ToArray();
foreach (var sampler in new[] { SamplerKind.DpmSolverPlusPlus, SamplerKind.Ddim, SamplerKind.Ddpm })
{
    clock.Restart();
    using var samples = model.Generate(new GenerationOptions { Sampler = sampler }, seeds);
    string grid = Path.Combine(outDir, $"samples-{sampler.ToString().ToLowerInvariant()}.png");
    ImageGrid.SavePng(samples, grid, columns: 8, scale: 4);
    Console.WriteLine($"{sampler}: 32 images in {clock.Elapsed.TotalSeconds:F1} s → {grid}");
}
Console.WriteLine($"Model saved to {modelPath}. Outputs are in {Path.GetFullPath(outDir)}");
return 0;
