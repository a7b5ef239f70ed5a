namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>Progress of <see cref="ImageClassifier.Train"/>, reported after every optimiser step.</summary>
/// <param name="Epoch">The epoch, from 1.</param>
/// <param name="Step">Steps done so far, from 1.</param>
/// <param name="TotalSteps">Steps the whole run will take.</param>
/// <param name="Loss">This step's cross-entropy loss.</param>
/// <param name="Elapsed">Time since training began.</param>
public sealed record ClassifierTrainingProgress(int Epoch, int Step, int TotalSteps, double Loss, TimeSpan Elapsed);
