using System.Diagnostics;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using static TorchSharp.torch;
using Microsoft.ML.Diffusion.Interchange;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// One side of benchmarks/diffusers_lockstep.py: DDIM sampling (η = 0, no clipping) of a diffusers UNet2DModel folder,
/// timed as diffusers' DDIMPipeline loop is timed on the other side: the same batch, steps and starting noise shape.
/// </summary>
internal static class DiffusersSampling
{
    public sealed record Result(string Folder, long Parameters, int Batch, int Steps, double[] Seconds, double MedianSeconds);

    public static Result Run(string folder, int batch, int steps, int repeats, Action<string> log)
    {
        using var model = DiffusersFormat.Load(folder, CPU);
        long parameters = model.Network.parameters().Sum(p => p.numel());
        var shape = model.ImageShape;
        var denoiser = model.AsDenoiser(forwardBatchSize: batch);
        var times = new List<double>();
        for (int r = 0; r < repeats + 1; r++)   // the first run warms up (allocator, oneDNN primitives) and is not counted
        {
            using var scope = NewDisposeScope();
            using var sampler = DiffusionSamplers.Create("ddim", model.Schedule, new SamplerOptions { Prediction = model.Prediction, Clipping = X0Clipping.None });
            var noise = randn([batch, shape[0], shape[1], shape[2]], generator: new Generator((ulong)r));
            var clock = Stopwatch.StartNew();
            using var images = SamplingLoop.Run(denoiser, sampler, noise, steps);
            if (r > 0) times.Add(clock.Elapsed.TotalSeconds);
        }
        var sorted = times.Order().ToArray();
        var result = new Result(folder, parameters, batch, steps, [.. times], sorted[sorted.Length / 2]);
        log($"[diffusers-sample] {folder}: {parameters:N0} parameters, batch {batch}, DDIM {steps}: median {result.MedianSeconds:F3} s");
        return result;
    }
}
