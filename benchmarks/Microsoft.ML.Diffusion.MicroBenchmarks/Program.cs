using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

// BenchmarkDotNet micro-benchmarks of the small pieces around the network: a sampler's update, the noise
// source, upsampling, checkpoint I/O. The whole-network numbers (training step, samplers, memory, the
// PyTorch comparison) come from benchmarks/run.sh.
//
//   dotnet run --project benchmarks/Microsoft.ML.Diffusion.MicroBenchmarks -c Release -- --filter '*'
//
// In-process: the benchmarks run in this process (no generated project to restore and build), with
// libtorch's intra-op threads set once, like the library does.
var config = DefaultConfig.Instance
    .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance))
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromAssembly(typeof(Microsoft.ML.Diffusion.MicroBenchmarks.SamplerStepBenchmarks).Assembly).Run(args, config);
