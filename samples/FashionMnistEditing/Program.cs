// Editing Fashion-MNIST garments with a class-conditional model: shirts redrawn as bags at strengths 0–1
// (DiffusionImageToImage), lower halves inpainted (DiffusionInpaint), strips between classes and seeds, and the cost of
// an edit at strength 0.5 against a generation.
//
//   dotnet run --project samples/FashionMnistEditing -c Release [-- --model fashion-class.zip|.mldiff --steps 1500 --out out/fashion-editing]
//
// Without --model it trains the class-conditional model first (about 17 minutes on 2 cores). Needs Debian's
// dataset-fashion-mnist (bash eng/install-data.sh).
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;

var options = new FashionMnistEditingOptions();
string outDir = Path.Combine("out", "fashion-editing");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--model" when i + 1 < args.Length: options = options with { Model = args[++i] }; break;
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0:
            options = options with { Steps = s }; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --model FILE (.zip or .mldiff), --steps N, --out DIR");
            return 2;
    }
}
if (!FashionMnist.IsAvailable(out string reason))
{
    Console.Error.WriteLine(reason);
    return 1;
}
if (options.Model is { } model && !File.Exists(model))
{
    Console.Error.WriteLine($"Model file '{model}' does not exist.");
    return 1;
}

var result = FashionMnistEditingSample.Run(outDir, options, Console.Out);
Console.WriteLine($"Outputs are in {Path.GetFullPath(outDir)}");
return 0;
