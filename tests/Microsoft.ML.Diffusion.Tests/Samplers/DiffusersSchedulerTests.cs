using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Networks.Diffusers;
using Microsoft.ML.Diffusion.Process;
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
    // Stable Diffusion's schedulers: SD 1.5's and SD 2's files as shipped, and the classes users switch to with from_config.
    [InlineData("pndm-sd15", 10)]               // PNDMScheduler, skip_prk_steps, leading + steps_offset 1, set_alpha_to_one false
    [InlineData("pndm-linspace-v", 12)]         // PLMS with linspace spacing (it still steps down by T/N) and v-prediction
    [InlineData("ddim-sd15", 10)]               // DDIMScheduler with SD 1.5's schedule
    [InlineData("euler-sd2-v", 12)]             // EulerDiscreteScheduler, SD 2: v-prediction, linspace at fractional timesteps
    [InlineData("euler-karras-sd15", 10)]       // use_karras_sigmas, linspace
    [InlineData("euler-leading-karras", 10)]    // Karras levels between σ(901) and σ(1); starts from √(σ²+1) z
    [InlineData("euler-trailing", 8)]
    [InlineData("euler-ancestral-sd15", 10)]    // EulerAncestralDiscreteScheduler, linspace
    [InlineData("euler-ancestral-sd2-v", 12)]   // fractional timesteps, v-prediction
    [InlineData("euler-ancestral-leading", 10)]
    [InlineData("lms-sd15", 12)]                // LMSDiscreteScheduler, order 4, linspace at fractional timesteps
    [InlineData("lms-leading", 10)]
    [InlineData("lms-karras-sd2-v", 12)]
    [InlineData("dpmsolver-sd15", 20)]          // DPM++ 2M with SD's schedule, 20 steps: second order to the end
    [InlineData("dpmsolver-leading-sd15", 20)]
    [InlineData("dpmsolver-karras-sd15", 20)]   // DPM++ 2M Karras: rounded Karras timesteps over the whole schedule
    [InlineData("dpmsolver-karras-sd2-v", 12)]
    public void ADiffusersSchedulerConfigRetracesDiffusersTrajectory(string name, int steps)
    {
        using var scope = NewDisposeScope();
        using var network = DiffusersUNetFolder.Load(Fixture("unet-attn"));
        var mapping = DiffusersSchedulerConfig.Read(File.ReadAllText(Path.Combine(Fixture(name), "scheduler_config.json")), name);
        var trajectory = SafeTensors.Read(File.ReadAllBytes(Path.Combine(Fixture(name), "trajectory.safetensors")), name);
        using var sampler = DiffusionSamplers.Create(mapping.Sampler, NoiseSchedule.Create(mapping.Schedule), mapping.Options);
        sampler.SetTimesteps(steps);
        var timesteps = trajectory["timesteps"].to(float64).data<double>().ToArray();
        Assert.Equal(timesteps.Length, sampler.Timesteps.Count);
        // Karras levels sit at fractional timesteps found from σ; diffusers' ᾱ are float32 products, the library's float64, so
        // those differ by up to ~1e-3 (the float64 values are what diffusers would get in float64). Whole timesteps and
        // linspace's float32 ones agree exactly.
        for (int i = 0; i < timesteps.Length; i++)
            Assert.True(Math.Abs(timesteps[i] - sampler.Timesteps[i]) <= 1e-3 + 1e-5 * timesteps[i], $"{name}: timestep {i} is {sampler.Timesteps[i]}, diffusers' {timesteps[i]}");

        using var noGrad = no_grad();
        // diffusers starts from z · init_noise_sigma; the library's samples are in the schedule's scale (the network's input).
        var x = trajectory["initial_noise"] * sampler.InitialNoiseScale;
        var samples = trajectory["samples"];
        trajectory.TryGetValue("step_noise", out var stepNoise);
        // The σ schedulers' samples are x_σ = x √(σ² + 1), with their σ after each step.
        trajectory.TryGetValue("sigmas", out var sigmas);
        bool whole = sampler.Timesteps.All(t => t == Math.Floor(t));
        for (int i = 0; i < sampler.Timesteps.Count; i++)
        {
            // As the sampling loop passes them: whole timesteps as integers, fractional ones as float32.
            var t = whole ? full(x.shape[0], (long)sampler.Timesteps[i], dtype: int64) : full(x.shape[0], sampler.Timesteps[i], dtype: float32);
            var output = network.Forward(x, t, null);
            // diffusers draws noise on every step but the last; the library's DDPM ignores what it is given there.
            var noise = sampler.IsStochastic ? (stepNoise is not null && i < stepNoise.shape[0] ? stepNoise[i] : zeros_like(x)) : null;
            using var step = sampler.Step(output, i, x, noise);
            x = step.PreviousSample.clone();
            var expected = sigmas is null ? samples[i] : samples[i] / Math.Sqrt(Math.Pow(sigmas[i + 1].item<float>(), 2) + 1);
            double error = (x - expected).abs().max().item<float>() / expected.abs().max().item<float>();
            Assert.True(error <= 1e-4, $"{name}, step {i} (t = {sampler.Timesteps[i]}): largest difference is {error:E2} of the largest value");
        }
    }

    [Fact]
    public void UnsupportedSchedulersFieldsAndValuesAreNamed()
    {
        string Error(string json) => Assert.Throws<CheckpointFormatException>(() => DiffusersSchedulerConfig.Read(json, "scheduler_config.json")).Message;
        Assert.Contains("UniPCMultistepScheduler", Error("""{"_class_name": "UniPCMultistepScheduler"}"""));
        Assert.Contains("beta_schedule \"exp\"", Error("""{"_class_name": "DDPMScheduler", "beta_schedule": "exp"}"""));
        Assert.Contains("variance_type \"learned_range\"", Error("""{"_class_name": "DDPMScheduler", "variance_type": "learned_range"}"""));
        Assert.Contains("timestep_spacing \"karras\"", Error("""{"_class_name": "DDIMScheduler", "timestep_spacing": "karras"}"""));
        Assert.Contains("timestep_spacing \"karras\"", Error("""{"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "karras"}"""));
        Assert.Contains("prediction_type \"flow\"", Error("""{"_class_name": "DDIMScheduler", "prediction_type": "flow"}"""));
        Assert.Contains("thresholding true", Error("""{"_class_name": "DDIMScheduler", "thresholding": true}"""));
        // Another class's field that asks for something is refused; later diffusers versions honour some in more classes.
        Assert.Contains("\"use_karras_sigmas\"", Error("""{"_class_name": "DDIMScheduler", "use_karras_sigmas": true}"""));
        Assert.Contains("\"thresholding\"", Error("""{"_class_name": "EulerDiscreteScheduler", "thresholding": true}"""));
        Assert.Contains("\"final_sigmas_type\"", Error("""{"_class_name": "EulerDiscreteScheduler", "final_sigmas_type": "zero"}"""));
        Assert.Contains("solver_order 3", Error("""{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"""));
        Assert.Contains("algorithm_type \"dpmsolver\"", Error("""{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"""));
        Assert.Equal(DiffusionSamplers.DpmSolverPlusPlus, DiffusersSchedulerConfig.Read("""{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}""", "x").Sampler);
        Assert.Contains("num_train_timesteps \"many\"", Error("""{"_class_name": "DDIMScheduler", "num_train_timesteps": "many"}"""));
        // PNDM without skip_prk_steps (its default) warms up with Runge–Kutta steps, which the library does not run.
        Assert.Contains("skip_prk_steps false", Error("""{"_class_name": "PNDMScheduler", "skip_prk_steps": false}"""));
        Assert.Contains("skip_prk_steps unset", Error("""{"_class_name": "PNDMScheduler"}"""));
        Assert.Contains("prediction_type \"sample\"", Error("""{"_class_name": "PNDMScheduler", "skip_prk_steps": true, "prediction_type": "sample"}"""));
        Assert.Contains("interpolation_type \"log_linear\"", Error("""{"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"}"""));
    }

    [Fact]
    public void StableDiffusionConfigsMapToTheirSamplers()
    {
        // SD 1.5: PLMS with leading spacing, offset 1, ᾱ_0 after the last step, no clipping (PNDM has none; its clip_sample is ignored).
        var sd15 = DiffusersSchedulerConfig.Read(File.ReadAllText(Path.Combine(Fixture("pndm-sd15"), "scheduler_config.json")), "sd15");
        Assert.Equal(DiffusionSamplers.Pndm, sd15.Sampler);
        Assert.Equal(NoiseScheduleKind.ScaledLinear, sd15.Schedule.Kind);
        Assert.Equal((TimestepSpacing.Leading, 1, false, X0Clipping.None), (sd15.Options.Spacing, sd15.Options.StepsOffset, sd15.Options.SetAlphaToOne, sd15.Options.Clipping));
        // SD 2: Euler, v-prediction, linspace (its default); PNDM's skip_prk_steps and set_alpha_to_one are carried along and ignored.
        var sd2 = DiffusersSchedulerConfig.Read(File.ReadAllText(Path.Combine(Fixture("euler-sd2-v"), "scheduler_config.json")), "sd2");
        Assert.Equal(DiffusionSamplers.Euler, sd2.Sampler);
        Assert.Equal((PredictionType.VPrediction, TimestepSpacing.Linspace, false), (sd2.Options.Prediction, sd2.Options.Spacing, sd2.Options.UseKarrasSigmas));
        var karras = DiffusersSchedulerConfig.Read("""{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true, "skip_prk_steps": true, "clip_sample": true}""", "x");
        Assert.True(karras.Options.UseKarrasSigmas);
        Assert.Equal(X0Clipping.None, karras.Options.Clipping);
        Assert.Equal(DiffusionSamplers.Lms, DiffusersSchedulerConfig.Read("""{"_class_name": "LMSDiscreteScheduler", "use_karras_sigmas": false}""", "x").Sampler);
        Assert.Equal(DiffusionSamplers.EulerAncestral, DiffusersSchedulerConfig.Read("""{"_class_name": "EulerAncestralDiscreteScheduler", "use_karras_sigmas": false}""", "x").Sampler);
    }
}
