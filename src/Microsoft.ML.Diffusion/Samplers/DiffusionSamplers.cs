using System.Collections.Concurrent;
using Microsoft.ML.Diffusion.Schedules;

namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// The registry of samplers by name, so a sampler can be chosen from configuration, saved with a generation stage
/// and added without changing the library: <see cref="Register"/> a factory under a new name and every entry point
/// (<c>DiffusionPipelines.Generate</c>, <c>DiffusionGenerate</c>, the command line) can use it.
/// </summary>
public static class DiffusionSamplers
{
    // The built-in samplers' registered names; users name them through SamplerName.Ddpm and its siblings.
    internal const string Ddpm = "ddpm";
    internal const string Ddim = "ddim";
    internal const string DpmSolverPlusPlus = "dpm-solver++";
    internal const string EulerAncestral = "euler-ancestral";
    internal const string Heun = "heun";
    internal const string Pndm = "pndm";
    internal const string Euler = "euler";
    internal const string Lms = "lms";

    private sealed record Entry(Func<NoiseSchedule, SamplerOptions, IDiffusionSampler> Create, Func<NoiseSchedule, int> DefaultSteps);

    private static readonly ConcurrentDictionary<string, Entry> Registry = new(StringComparer.Ordinal);

    static DiffusionSamplers()
    {
        Register(Ddpm, (s, o) => new DdpmSampler(s, o), s => s.Length);
        Register(Ddim, (s, o) => new DdimSampler(s, o), s => Math.Min(50, s.Length));
        Register(DpmSolverPlusPlus, (s, o) => new DpmSolverPlusPlusSampler(s, o), s => Math.Min(20, s.Length));
        Register(EulerAncestral, (s, o) => new EulerAncestralSampler(s, o), s => Math.Min(30, s.Length));
        Register(Heun, (s, o) => new HeunSampler(s, o), s => Math.Min(15, s.Length));
        Register(Pndm, (s, o) => new PndmSampler(s, o), s => Math.Min(50, s.Length));
        Register(Euler, (s, o) => new EulerSampler(s, o), s => Math.Min(30, s.Length));
        Register(Lms, (s, o) => new LmsSampler(s, o), s => Math.Min(50, s.Length));
    }

    /// <summary>
    /// Registers (or replaces) a sampler under <paramref name="name"/> (lower case, as written into model zips).
    /// <paramref name="defaultSteps"/> gives the step count used when none is asked for.
    /// </summary>
    public static void Register(string name, Func<NoiseSchedule, SamplerOptions, IDiffusionSampler> create, Func<NoiseSchedule, int> defaultSteps)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(create);
        ArgumentNullException.ThrowIfNull(defaultSteps);
        if (name != name.Trim().ToLowerInvariant()) throw new ArgumentException($"Sampler names are lower case without surrounding spaces; got '{name}'.", nameof(name));
        Registry[name] = new Entry(create, defaultSteps);
    }

    /// <summary>The registered names.</summary>
    public static IReadOnlyCollection<string> Names => Registry.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <summary>Whether <paramref name="name"/> is registered.</summary>
    public static bool IsRegistered(SamplerName name) => Registry.ContainsKey(name.Value);

    /// <summary>A new sampler <paramref name="name"/> over <paramref name="schedule"/>.</summary>
    public static IDiffusionSampler Create(SamplerName name, NoiseSchedule schedule, SamplerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Find(name).Create(schedule, options ?? new SamplerOptions());
    }

    /// <summary>The step count sampler <paramref name="name"/> is designed for (DDPM: all T; DDIM 50; DPM-Solver++ 20; Euler ancestral 30; Heun 15; PNDM 50; Euler 30; LMS 50).</summary>
    public static int DefaultSteps(SamplerName name, NoiseSchedule schedule) => Find(name).DefaultSteps(schedule);

    /// <summary>The registered name of a built-in sampler.</summary>
    internal static string NameOf(SamplerKind kind) => kind switch
    {
        SamplerKind.Ddpm => Ddpm,
        SamplerKind.Ddim => Ddim,
        SamplerKind.DpmSolverPlusPlus => DpmSolverPlusPlus,
        SamplerKind.EulerAncestral => EulerAncestral,
        SamplerKind.Heun => Heun,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown sampler kind."),
    };

    private static Entry Find(SamplerName name)
        => Registry.TryGetValue(name.Value, out var entry) ? entry
            : throw new UnknownSamplerException(name.Value);
}
