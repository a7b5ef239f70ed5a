// Pipeline composition: the diffusion stages mixed with ML.NET's own image stages, end to end.
//
//   dotnet run --project samples/PipelineComposition -c Release [-- --steps 600 --out out/pipeline-composition]
//
// 1. writes a small set of coloured shape images (PNG) to the output folder;
// 2. trains with LoadImages → ResizeImages → TrainDiffusion and saves the model zip;
// 3. loads the zip in a fresh MLContext and builds a generation pipeline:
//    DiffusionGenerate → ConvertToGrayscale → ExtractPixels (colour and grey) → Concatenate → CopyColumns;
// 4. saves that pipeline as its own zip, loads it back, runs it, and writes PNG grids of what it made.
using Microsoft.ML.Diffusion.Samples;

int steps = PipelineCompositionSample.DefaultSteps;
string outDir = Path.Combine("out", "pipeline-composition");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0: steps = s; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --steps N (positive), --out DIR");
            return 2;
    }
}

var result = PipelineCompositionSample.Run(outDir, steps, Console.Out);
Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
return 0;
