using System.Collections.Concurrent;
using System.Reflection;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// The registry of noise-predictor kinds by name: which options record describes a kind and how a network is
/// built from it. Models name their network's kind in their files, so a kind must be registered (in code with
/// <see cref="Register{TOptions}"/>, or by an assembly attribute <see cref="NoisePredictorRegistrationAttribute"/>
/// in any loaded assembly) before a model of that kind is loaded. Diffusers' UNet2DModel is registered as
/// "diffusers-unet2d" and UNet2DConditionModel as "diffusers-unet2d-condition"; <see cref="UNetOptions"/>, the UNet
/// described in the library's terms, as "unet" (the name of the library's first UNet in its files), building the
/// diffusers network of that shape.
/// </summary>
public static class NoisePredictors
{
    private sealed record Entry(string Name, Type OptionsType, Func<NoisePredictorOptions, NoisePredictor> Create);

    private static readonly ConcurrentDictionary<string, Entry> ByName = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<Type, Entry> ByType = new();
    private static readonly ConcurrentDictionary<Assembly, bool> ScannedAssemblies = new();

    /// <summary>The name <see cref="UNetOptions"/> are registered under.</summary>
    public const string UNet = "unet";

    static NoisePredictors()
    {
        Register<UNetOptions>(UNet, o => Create(Legacy.FirstUNetFiles.Network(o)));
        Register<Diffusers.UNet2DModelOptions>(Diffusers.UNet2DModelNoisePredictor.RegisteredName, o => new Diffusers.UNet2DModelNoisePredictor(o));
        Register<Diffusers.UNet2DConditionOptions>(Diffusers.UNet2DConditionNoisePredictor.RegisteredName, o => new Diffusers.UNet2DConditionNoisePredictor(o));
    }

    /// <summary>
    /// Registers a kind of network: <paramref name="name"/> is written into model files, <typeparamref name="TOptions"/>
    /// is its JSON configuration and <paramref name="create"/> builds an untrained network from it. Registering the
    /// same name for the same options type again replaces the factory; another type under a taken name is an error.
    /// </summary>
    public static void Register<TOptions>(string name, Func<TOptions, NoisePredictor> create) where TOptions : NoisePredictorOptions
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(create);
        var entry = new Entry(name, typeof(TOptions), o => create((TOptions)o));
        Add(entry);
    }

    /// <summary>The registered names.</summary>
    public static IReadOnlyCollection<string> Names
    {
        get
        {
            ScanLoadedAssemblies();
            return ByName.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
        }
    }

    /// <summary>Builds an untrained network from <paramref name="options"/> (weights from torch's global generator).</summary>
    public static NoisePredictor Create(NoisePredictorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Devices.DiffusionDevice.EnsureInitialized();   // native settings before the first weight is made
        var entry = Find(options.GetType());
        var network = entry.Create(options);
        if (network is null) throw new InvalidOperationException($"The factory registered for noise predictor '{entry.Name}' returned null.");
        return network;
    }

    /// <summary>The name <paramref name="optionsType"/> is registered under.</summary>
    public static string NameOf(Type optionsType) => Find(optionsType).Name;

    /// <summary>The options type registered under <paramref name="name"/>.</summary>
    public static Type OptionsTypeOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (ByName.TryGetValue(name, out var entry)) return entry.OptionsType;
        ScanLoadedAssemblies();
        if (ByName.TryGetValue(name, out entry)) return entry.OptionsType;
        throw new UnknownNoisePredictorException(
            $"No noise predictor is registered as '{name}' (registered: {string.Join(", ", ByName.Keys.Order())}). " +
            "Register it with NoisePredictors.Register, or load the assembly that declares it with [assembly: NoisePredictorRegistration], before loading the model.");
    }

    private static Entry Find(Type optionsType)
    {
        if (ByType.TryGetValue(optionsType, out var entry)) return entry;
        ScanLoadedAssemblies();
        if (ByType.TryGetValue(optionsType, out entry)) return entry;
        throw new UnknownNoisePredictorException(
            $"The options type {optionsType.FullName} is not registered as a noise predictor; register it with NoisePredictors.Register<{optionsType.Name}>(name, factory).");
    }

    private static void Add(Entry entry)
    {
        lock (ByName)
        {
            if (ByName.TryGetValue(entry.Name, out var existing) && existing.OptionsType != entry.OptionsType)
                throw new ArgumentException($"The noise predictor name '{entry.Name}' is already registered for {existing.OptionsType.FullName}.", nameof(entry));
            if (ByType.TryGetValue(entry.OptionsType, out var named) && named.Name != entry.Name)
                throw new ArgumentException($"{entry.OptionsType.FullName} is already registered as '{named.Name}'.", nameof(entry));
            ByName[entry.Name] = entry;
            ByType[entry.OptionsType] = entry;
        }
    }

    // Assembly attributes let a model's network kind be found in a process that never ran the registering code,
    // as ML.NET finds its loadable components.
    private static void ScanLoadedAssemblies()
    {
        foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
        {
            if (assembly.IsDynamic || !ScannedAssemblies.TryAdd(assembly, true)) continue;
            foreach (var attribute in assembly.GetCustomAttributes<NoisePredictorRegistrationAttribute>())
                Add(new Entry(attribute.Name, attribute.OptionsType, FactoryFor(attribute)));
        }
    }

    private static Func<NoisePredictorOptions, NoisePredictor> FactoryFor(NoisePredictorRegistrationAttribute attribute)
    {
        var constructor = attribute.NetworkType.GetConstructor([attribute.OptionsType])
            ?? throw new InvalidOperationException($"{attribute.NetworkType.FullName}, registered as noise predictor '{attribute.Name}', needs a public constructor taking {attribute.OptionsType.Name}.");
        return o => (NoisePredictor)constructor.Invoke([o]);
    }
}
