namespace Microsoft.ML.Diffusion.Networks;

/// <summary>A model names a kind of noise predictor that is not registered in this process.</summary>
public sealed class UnknownNoisePredictorException(string message) : InvalidOperationException(message);
