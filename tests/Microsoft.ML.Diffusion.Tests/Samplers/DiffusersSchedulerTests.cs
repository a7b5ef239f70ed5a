using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Interchange.Diffusers;
using Microsoft.ML.Diffusion.Schedules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Samplers;

/// <summary>diffusers' scheduler configurations, mapped onto the library's samplers, retrace diffusers' own trajectories step by step.</summary>
public sealed class DiffusersSchedulerTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "Diffusers", name);

    [Theory]
    [InlineData("ddpm-linear", 10)]          // DDPMScheduler: linear β, clipped x̂₀, fixed_small variance, leading spacing
    [InlineData("ddpm-cosine-large", 10)]    // squaredcos_cap_v2, no clipping, fixed_large variance
    [InlineData("ddim-leading", 10)]         // DDIMScheduler: steps_offset 1, set_alpha_to_one false
    [InlineData("ddim-trailing-v", 8)]       // scaled_linear β, v-prediction, trailing spacing
    [InlineData("ddim-clip-v", 20)]          // clip_sample true (diffusers' default): x̂₀ clipped, the model's ε kept; cosine β, v, trailing
    [InlineData("ddpm-clip-v", 20)]          // DDPMScheduler with clip_sample true, cosine β, v-prediction, trailing spacing
    [InlineData("dpmsolver-multistep", 12)]  // DPMSolverMultistepScheduler: dpmsolver++ 2M, linspace, lower-order final step to t = 0
    public void ADiffusersSchedulerConfigRetracesDiffusersTrajectory(string name, int steps)
    {
        using var scope = NewDisposeScope();
        using var network = DiffusersUNetFolder.Load(Fixture("unet-attn"));
        var mapping = DiffusersSchedulerConfig.Read(File.ReadAllText(Path.Combine(Fixture(name), "scheduler_config.json")), name);
        var trajectory = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(name), "trajectory.safetensors")), name);
        using var sampler = DiffusionSamplers.Create(mapping.Sampler, NoiseSchedule.Create(mapping.Schedule), mapping.Options);
        sampler.SetTimesteps(steps);
        Assert.Equal(trajectory["timesteps"].data<long>().ToArray().Select(t => (double)t), sampler.Timesteps);

        using var noGrad = no_grad();
        var x = trajectory["initial_noise"];
        var samples = trajectory["samples"];
        trajectory.TryGetValue("step_noise", out var stepNoise);
        for (int i = 0; i < steps; i++)
        {
            var t = full(x.shape[0], (long)sampler.Timesteps[i], dtype: int64);
            var output = network.Forward(x, t, null);
            // diffusers draws noise on every step but the last; the library's DDPM ignores what it is given there.
            var noise = sampler.IsStochastic ? (stepNoise is not null && i < stepNoise.shape[0] ? stepNoise[i] : zeros_like(x)) : null;
            using var step = sampler.Step(output, i, x, noise);
            x = step.PreviousSample.clone();
            var expected = samples[i];
            double error = (x - expected).abs().max().item<float>() / expected.abs().max().item<float>();
            Assert.True(error <= 1e-4, $"{name}, step {i} (t = {sampler.Timesteps[i]}): largest difference is {error:E2} of the largest value");
        }
    }

    [Fact]
    public void UnsupportedSchedulersFieldsAndValuesAreNamed()
    {
        string Error(string json) => Assert.Throws<CheckpointFormatException>(() => DiffusersSchedulerConfig.Read(json, "scheduler_config.json")).Message;
        Assert.Contains("EulerDiscreteScheduler", Error("""{"_class_name": "EulerDiscreteScheduler"}"""));
        Assert.Contains("beta_schedule \"exp\"", Error("""{"_class_name": "DDPMScheduler", "beta_schedule": "exp"}"""));
        Assert.Contains("variance_type \"learned_range\"", Error("""{"_class_name": "DDPMScheduler", "variance_type": "learned_range"}"""));
        Assert.Contains("timestep_spacing \"karras\"", Error("""{"_class_name": "DDIMScheduler", "timestep_spacing": "karras"}"""));
        Assert.Contains("prediction_type \"flow\"", Error("""{"_class_name": "DDIMScheduler", "prediction_type": "flow"}"""));
        Assert.Contains("thresholding true", Error("""{"_class_name": "DDIMScheduler", "thresholding": true}"""));
        Assert.Contains("\"use_karras_sigmas\"", Error("""{"_class_name": "DDIMScheduler", "use_karras_sigmas": true}"""));
        Assert.Contains("solver_order 3", Error("""{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"""));
        Assert.Contains("algorithm_type \"dpmsolver\"", Error("""{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"""));
        Assert.Equal(DiffusionSamplers.DpmSolverPlusPlus, DiffusersSchedulerConfig.Read("""{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}""", "x").Sampler);
        Assert.Contains("num_train_timesteps \"many\"", Error("""{"_class_name": "DDIMScheduler", "num_train_timesteps": "many"}"""));
    }
}
