// Quick start, the main job: an ML.NET pipeline trains a diffusion model on the built-in shapes data set,
// saves it as a zip, a fresh MLContext loads it, and generation pipelines write one PNG grid per sampler.
// About 5 minutes on 2 CPU cores.
//
//   dotnet run --project samples/QuickStart -c Release [-- --steps 1000 --out out/quickstart]
//
// 1. the shapes (512 images, 16×16 grey) become an IDataView of float vectors;
// 2. TrainDiffusion fits the model and ml.Model.SaveAtomically writes shapes-model.zip;
// 3. a fresh MLContext loads the zip and, for DPM-Solver++ (20 steps), DDIM (50), Euler ancestral (30) and Heun (15),
//    runs DiffusionGenerate → ResizeImages (64×64) → ConvertToGrayscale → ExtractPixels into a PNG grid.
using Microsoft.ML.Diffusion.Samples;

var options = new QuickStartOptions();
string outDir = Path.Combine("out", "quickstart");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0: options.Steps = s; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --steps N (positive), --out DIR");
            return 2;
    }
}

QuickStartSample.Run(outDir, options, Console.Out);
return 0;
