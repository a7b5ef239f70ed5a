// Usage: Microsoft.ML.Diffusion.ZipProbe <model.zip> <seed,seed,...> <output column> [assembly.dll ...]
// Loads the given assemblies (e.g. one that registers a noise predictor with [assembly: NoisePredictorRegistration]),
// then the zip in a new MLContext, feeds a Seed column through it and prints each row's output column as
// comma-separated floats, one row per line.
//        Microsoft.ML.Diffusion.ZipProbe save-loop <folder>
// Saves a model zip, a checkpoint and a training state into the folder over and over (SaveLoop.cs).
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;

if (args is ["save-loop", var folder]) return Microsoft.ML.Diffusion.Testing.SaveLoop.Run(folder, TimeSpan.FromSeconds(60));
if (args.Length < 3)
{
    Console.Error.WriteLine("usage: ZipProbe <model.zip> <seed,seed,...> <output column> [assembly.dll ...]");
    return 2;
}
foreach (var assembly in args.Skip(3)) Assembly.LoadFrom(assembly);
var ml = new MLContext();
var model = ml.Model.Load(args[0], out _);
var seeds = args[1].Split(',').Select(s => new SeedRow { Seed = int.Parse(s) }).ToArray();
var output = model.Transform(ml.Data.LoadFromEnumerable(seeds));
foreach (var row in output.GetColumn<VBuffer<float>>(args[2]))
    Console.WriteLine(string.Join(",", row.DenseValues().Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))));
return 0;

internal sealed class SeedRow
{
    public int Seed { get; set; }
}
