// Fashion-MNIST, class- or text-conditional: trains with ML.NET (IDX data view → TrainDiffusion with a
// condition column), saves the zip, loads it in a fresh context and generates a grid per guidance scale,
// one row per class ("a t-shirt", "a pair of trousers", … "an ankle boot").
//
//   dotnet run --project samples/FashionMnist -c Release [-- --condition class|text --steps 1500 --evaluate --out out/fashion-mnist]
//
// Needs Debian's dataset-fashion-mnist (bash eng/install-data.sh). --evaluate also trains the
// project's CNN classifier (3 epochs) and prints the fraction of samples it assigns to the prompted class.
using System.Globalization;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;

var options = new FashionMnistSampleOptions();
string outDir = Path.Combine("out", "fashion-mnist");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--condition" when i + 1 < args.Length && Enum.TryParse(args[i + 1], ignoreCase: true, out FashionCondition c):
            options = options with { Condition = c }; i++; break;
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0:
            options = options with { Steps = s }; i++; break;
        case "--guidance" when i + 1 < args.Length && ParseScales(args[i + 1]) is { } scales:
            options = options with { GuidanceScales = scales }; i++; break;
        case "--evaluate": options = options with { Evaluate = true }; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --condition class|text, --steps N, --guidance 1,3 (non-negative numbers), --evaluate, --out DIR");
            return 2;
    }
}
if (!FashionMnist.IsAvailable(out string reason))
{
    Console.Error.WriteLine(reason);
    return 1;
}

var result = FashionMnistSample.Run(outDir, options, Console.Out);
Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
return 0;

// "1,3" → [1, 3]; null for anything that is not a list of non-negative numbers.
static double[]? ParseScales(string text)
{
    var parts = text.Split(',', StringSplitOptions.TrimEntries);
    var scales = new double[parts.Length];
    for (int i = 0; i < parts.Length; i++)
        if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out scales[i]) || !(scales[i] >= 0) || double.IsInfinity(scales[i]))
            return null;
    return scales;
}
