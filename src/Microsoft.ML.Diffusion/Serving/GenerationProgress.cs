namespace Microsoft.ML.Diffusion.Serving;

/// <summary>How far a request has come: network evaluations done out of the total.</summary>
/// <param name="StepsDone">Evaluations done.</param>
/// <param name="TotalSteps">Evaluations in all.</param>
public readonly record struct GenerationProgress(int StepsDone, int TotalSteps);
