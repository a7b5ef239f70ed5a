using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Process;
using Microsoft.ML.Diffusion.Schedules;

using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers <c>scheduler_config.json</c> mapped onto the library's schedule and samplers, as diffusers v0.21 runs it:
/// DDPMScheduler to the DDPM sampler, DDIMScheduler to DDIM, DPMSolverMultistepScheduler (dpmsolver++, order 2) to
/// DPM-Solver++, PNDMScheduler (skip_prk_steps, as Stable Diffusion 1.x sets it) to PNDM, EulerDiscreteScheduler to Euler,
/// EulerAncestralDiscreteScheduler to Euler ancestral and LMSDiscreteScheduler to LMS, with their β schedule, prediction type,
/// clipping, timestep spacing, offset, variance, final ᾱ and Karras sigmas. Fields missing from a file take the class's
/// defaults. Fields of the other schedulers are ignored, as diffusers ignores them (Stable Diffusion's files carry PNDM's
/// skip_prk_steps into EulerDiscreteScheduler, for instance), unless they ask for thresholding, zero terminal SNR or Karras
/// sigmas, which later diffusers versions give more classes. A scheduler, field or value the library does not reproduce is
/// an error that names it.
/// </summary>
internal static class DiffusersSchedulerConfig
{
    public sealed record Mapping(NoiseScheduleOptions Schedule, string Sampler, SamplerOptions Options, string ClassName);

    private static readonly HashSet<string> Descriptive = ["_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"];

    // The fields every scheduler here has.
    private static readonly string[] Common =
        ["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "timestep_spacing", "steps_offset"];

    private static readonly string[] Thresholding = ["thresholding", "dynamic_thresholding_ratio", "sample_max_value"];

    // Each class's own fields besides the common ones (diffusers v0.21.4's constructors).
    private static readonly Dictionary<string, string[]> Own = new()
    {
        ["DDPMScheduler"] = ["variance_type", "clip_sample", "clip_sample_range", "rescale_betas_zero_snr", .. Thresholding],
        ["DDIMScheduler"] = ["clip_sample", "clip_sample_range", "set_alpha_to_one", "rescale_betas_zero_snr", .. Thresholding],
        ["DPMSolverMultistepScheduler"] =
            ["solver_order", "algorithm_type", "solver_type", "lower_order_final", "use_karras_sigmas", "lambda_min_clipped", "variance_type", .. Thresholding],
        ["PNDMScheduler"] = ["skip_prk_steps", "set_alpha_to_one"],
        ["EulerDiscreteScheduler"] = ["interpolation_type", "use_karras_sigmas"],
        ["EulerAncestralDiscreteScheduler"] = [],
        ["LMSDiscreteScheduler"] = ["use_karras_sigmas"],
    };

    // Fields the library only supports at one setting, wherever the class has them.
    private static readonly Dictionary<string, object?> Fixed = new()
    {
        ["thresholding"] = false,
        ["rescale_betas_zero_snr"] = false,
        ["trained_betas"] = null,
        ["interpolation_type"] = "linear",
    };

    // DPMSolverMultistepScheduler's settings the DPM-Solver++ sampler reproduces (diffusers' defaults).
    private static readonly Dictionary<string, object?> MultistepFixed = new()
    {
        ["algorithm_type"] = "dpmsolver++",
        ["solver_order"] = 2,
        ["solver_type"] = "midpoint",
        ["lower_order_final"] = true,
        ["lambda_min_clipped"] = "-Infinity",
        ["variance_type"] = null,
    };

    // Fields of other classes that are not ignored when they ask for something: later diffusers versions honour them in more classes.
    private static readonly HashSet<string> NeverIgnored = ["thresholding", "rescale_betas_zero_snr", "use_karras_sigmas"];

    private static readonly HashSet<string> Known = [.. Common, .. Own.Values.SelectMany(f => f)];

    public const string FileName = "scheduler_config.json";

    /// <summary>Reads the scheduler of a diffusers folder: its scheduler_config.json at the top or in a scheduler subfolder, or the file itself.</summary>
    public static (string Path, Mapping Mapping) ReadFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string path = File.Exists(folder) ? folder
            : File.Exists(Path.Combine(folder, "scheduler", FileName)) ? Path.Combine(folder, "scheduler", FileName)
            : Path.Combine(folder, FileName);
        if (!Directory.Exists(folder) && !File.Exists(folder)) throw new DirectoryNotFoundException($"The diffusers model folder '{folder}' does not exist.");
        if (!File.Exists(path))
            throw new FileNotFoundException($"'{folder}' has no {FileName} (nor scheduler/{FileName}); the noise schedule the model was trained with must be known.", path);
        return (path, Read(File.ReadAllText(path), $"'{path}'"));
    }

    /// <summary>
    /// A DDPMScheduler configuration for <paramref name="schedule"/> and <paramref name="prediction"/> (what diffusers'
    /// DDPMPipeline loads; DDIMScheduler and DPMSolverMultistepScheduler.from_config read it too). Schedules diffusers
    /// cannot express are an error that says why.
    /// </summary>
    public static string Write(NoiseScheduleOptions schedule, PredictionType prediction)
    {
        string betaSchedule = schedule.Kind switch
        {
            NoiseScheduleKind.Linear => "linear",
            NoiseScheduleKind.ScaledLinear => "scaled_linear",
            NoiseScheduleKind.Sigmoid => "sigmoid",
            NoiseScheduleKind.Cosine when schedule.CosineOffset == 0.008 && schedule.MaxBeta == 0.999 => "squaredcos_cap_v2",
            NoiseScheduleKind.Cosine => throw new NotSupportedException($"diffusers' cosine schedule (squaredcos_cap_v2) has offset 0.008 and β cap 0.999; this one has {schedule.CosineOffset} and {schedule.MaxBeta}."),
            _ => throw new NotSupportedException($"The {schedule.Kind} schedule has no diffusers equivalent."),
        };
        if (schedule.ZeroTerminalSnr)
            throw new NotSupportedException("diffusers' DDPMScheduler (v0.21) cannot rescale a schedule to zero terminal SNR.");
        var config = new JsonObject
        {
            ["_class_name"] = "DDPMScheduler",
            ["_diffusers_version"] = UNet2DModelConfig.DiffusersVersion,
            ["beta_end"] = schedule.BetaEnd,
            ["beta_schedule"] = betaSchedule,
            ["beta_start"] = schedule.BetaStart,
            ["clip_sample"] = true,
            ["clip_sample_range"] = 1.0,
            ["num_train_timesteps"] = schedule.TrainSteps,
            ["prediction_type"] = prediction switch
            {
                PredictionType.Epsilon => "epsilon",
                PredictionType.VPrediction => "v_prediction",
                PredictionType.Sample => "sample",
                _ => throw new NotSupportedException($"Prediction type {prediction} has no diffusers equivalent."),
            },
            ["steps_offset"] = 0,
            ["thresholding"] = false,
            ["timestep_spacing"] = "leading",
            ["trained_betas"] = null,
            ["variance_type"] = "fixed_small",
        };
        return config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    public static Mapping Read(string json, string source)
    {
        JsonObject config;
        try
        {
            // Python's json writes infinities and NaN as bare words (lambda_min_clipped: -Infinity); read them as strings.
            json = System.Text.RegularExpressions.Regex.Replace(json, @"(:\s*)(-?Infinity|NaN)(\s*[,}\]])", "$1\"$2\"$3");
            config = JsonNode.Parse(json) as JsonObject ?? throw new CheckpointFormatException($"{source} is not a JSON object.");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CheckpointFormatException($"{source} is not valid JSON: {e.Message}", e);
        }
        string kind = Get(config, "_class_name", source, "");
        if (!Own.TryGetValue(kind, out var ownFields))
            throw new CheckpointFormatException($"{source} describes a {(kind.Length == 0 ? "scheduler without _class_name" : kind)}; supported are {string.Join(", ", Own.Keys)}.");
        var own = new HashSet<string>([.. Common, .. ownFields]);
        foreach (var (name, value) in config)
        {
            if (Descriptive.Contains(name) || own.Contains(name)) continue;
            bool asks = value is not null && value.ToJsonString() != "false";
            if (!Known.Contains(name) || (NeverIgnored.Contains(name) && asks))
                throw new CheckpointFormatException($"{source} has field \"{name}\" ({value?.ToJsonString() ?? "null"}), which {kind} here does not support.");
        }
        bool multistep = kind == "DPMSolverMultistepScheduler";
        foreach (var (name, supported) in multistep ? Fixed.Concat(MultistepFixed) : Fixed)
            if (own.Contains(name) && config.TryGetPropertyValue(name, out var node) && node?.ToJsonString() != (supported is null ? null : System.Text.Json.JsonSerializer.Serialize(supported)))
                throw new CheckpointFormatException($"{source} has {name} {node?.ToJsonString() ?? "null"}; only {System.Text.Json.JsonSerializer.Serialize(supported)} is supported.");

        string betaSchedule = Get(config, "beta_schedule", source, "linear");
        var schedule = new NoiseScheduleOptions
        {
            TrainSteps = Get(config, "num_train_timesteps", source, 1000),
            BetaStart = Get(config, "beta_start", source, 0.0001),
            BetaEnd = Get(config, "beta_end", source, 0.02),
            Kind = betaSchedule switch
            {
                "linear" => NoiseScheduleKind.Linear,
                "scaled_linear" => NoiseScheduleKind.ScaledLinear,
                "squaredcos_cap_v2" => NoiseScheduleKind.Cosine,
                "sigmoid" => NoiseScheduleKind.Sigmoid,
                _ => throw new CheckpointFormatException($"{source} has beta_schedule \"{betaSchedule}\"; supported are linear, scaled_linear, squaredcos_cap_v2 and sigmoid."),
            },
        };
        string prediction = Get(config, "prediction_type", source, "epsilon");
        bool onScheduleSteps = kind is "DDPMScheduler" or "DDIMScheduler" or "PNDMScheduler";
        string spacing = Get(config, "timestep_spacing", source, onScheduleSteps ? "leading" : "linspace");
        bool clip = kind is "DDPMScheduler" or "DDIMScheduler" && Get(config, "clip_sample", source, true);   // the others never clip x̂₀
        var options = new SamplerOptions
        {
            Prediction = prediction switch
            {
                "epsilon" => PredictionType.Epsilon,
                "v_prediction" => PredictionType.VPrediction,
                "sample" when kind != "PNDMScheduler" => PredictionType.Sample,
                _ => throw new CheckpointFormatException($"{source} has prediction_type \"{prediction}\"; supported are epsilon, v_prediction{(kind == "PNDMScheduler" ? "" : " and sample")}."),
            },
            Clipping = clip ? X0Clipping.Clip : X0Clipping.None,
            ClipRange = Get(config, "clip_sample_range", source, 1.0),
            Spacing = spacing switch
            {
                "leading" => TimestepSpacing.Leading,
                "trailing" => TimestepSpacing.Trailing,
                "linspace" => TimestepSpacing.Linspace,
                _ => throw new CheckpointFormatException($"{source} has timestep_spacing \"{spacing}\"; supported are leading, trailing and linspace."),
            },
            StepsOffset = Get(config, "steps_offset", source, 0),
            UseKarrasSigmas = own.Contains("use_karras_sigmas") && Get(config, "use_karras_sigmas", source, false),
        };
        string sampler;
        switch (kind)
        {
            case "DDPMScheduler":
                sampler = DiffusionSamplers.Ddpm;
                string variance = Get(config, "variance_type", source, "fixed_small");
                options = options with
                {
                    UseLargeVariance = variance switch
                    {
                        "fixed_small" => false,
                        "fixed_large" => true,
                        _ => throw new CheckpointFormatException($"{source} has variance_type \"{variance}\"; supported are fixed_small and fixed_large."),
                    },
                };
                break;
            case "DDIMScheduler":
                sampler = DiffusionSamplers.Ddim;
                options = options with { SetAlphaToOne = Get(config, "set_alpha_to_one", source, true) };
                break;
            case "PNDMScheduler":
                // Without skip_prk_steps (its default) PNDM warms up with Runge–Kutta steps, which the library does not run.
                if (!Get(config, "skip_prk_steps", source, false))
                    throw new CheckpointFormatException($"{source} has skip_prk_steps {(config.ContainsKey("skip_prk_steps") ? "false" : "unset (false)")}: PNDMScheduler's Runge–Kutta warm-up is not supported; only skip_prk_steps true (PLMS, as Stable Diffusion sets it) is.");
                sampler = DiffusionSamplers.Pndm;
                options = options with { SetAlphaToOne = Get(config, "set_alpha_to_one", source, false) };
                break;
            case "EulerDiscreteScheduler":
                sampler = DiffusionSamplers.Euler;
                break;
            case "EulerAncestralDiscreteScheduler":
                sampler = DiffusionSamplers.EulerAncestral;
                break;
            case "LMSDiscreteScheduler":
                sampler = DiffusionSamplers.Lms;
                break;
            default:
                sampler = DiffusionSamplers.DpmSolverPlusPlus;
                break;
        }
        try
        {
            schedule.Validate();
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"{source} describes a schedule this library cannot build: {e.Message}", e);
        }
        return new Mapping(schedule, sampler, options, kind);
    }

    private static T Get<T>(JsonObject config, string field, string source, T fallback)
    {
        if (!config.TryGetPropertyValue(field, out var node) || node is null) return fallback;
        try
        {
            if (typeof(T) == typeof(int))
            {
                double number = node.GetValue<double>();
                if (number != Math.Floor(number)) throw new FormatException();
                return (T)(object)(int)number;
            }
            return System.Text.Json.JsonSerializer.Deserialize<T>(node) ?? fallback;
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or System.Text.Json.JsonException)
        {
            throw new CheckpointFormatException($"{source} has {field} {node.ToJsonString()}, which is not a {(typeof(T) == typeof(int) ? "whole number" : typeof(T) == typeof(double) ? "number" : typeof(T) == typeof(bool) ? "true or false" : "string")}.", e);
        }
    }
}
