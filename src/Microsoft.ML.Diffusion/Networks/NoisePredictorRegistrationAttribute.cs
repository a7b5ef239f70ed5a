namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// Registers a kind of noise predictor from its assembly: <c>[assembly: NoisePredictorRegistration("name", typeof(MyOptions), typeof(MyNetwork))]</c>.
/// The network type needs a public constructor taking the options type. <see cref="NoisePredictors"/> reads these
/// attributes from every loaded assembly, so a process can load a model of that kind without registering it in code.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class NoisePredictorRegistrationAttribute(string name, Type optionsType, Type networkType) : Attribute
{
    /// <summary>The name written into model files.</summary>
    public string Name { get; } = !string.IsNullOrWhiteSpace(name) ? name : throw new ArgumentException("A registration needs a name.", nameof(name));

    /// <summary>The <see cref="NoisePredictorOptions"/> record.</summary>
    public Type OptionsType { get; } = optionsType is not null && optionsType.IsSubclassOf(typeof(NoisePredictorOptions)) && !optionsType.IsAbstract
        ? optionsType : throw new ArgumentException($"{optionsType?.FullName} is not a concrete NoisePredictorOptions record.", nameof(optionsType));

    /// <summary>The <see cref="NoisePredictor"/> built from it.</summary>
    public Type NetworkType { get; } = networkType is not null && networkType.IsSubclassOf(typeof(NoisePredictor))
        ? networkType : throw new ArgumentException($"{networkType?.FullName} is not a NoisePredictor.", nameof(networkType));
}
