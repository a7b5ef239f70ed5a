// LoRA training with ML.NET: a small unconditional Fashion-MNIST model (trained here, or --base <zip>), then a rank-4
// LoRA trained on 16 inverted images (dark clothes on white) with the base frozen. Writes before.png and after.png
// (the same seeds without and with the LoRA), the adapter (inverted-lora.safetensors, diffusers' layout), the base
// model zip and the LoRA's training images as PNG files, and prints the light-background share of each grid.
// A few minutes on 2 CPU cores.
//
//   dotnet run --project samples/LoraTraining -c Release [-- --base out/lora/base-model.zip --base-steps 600 --lora-steps 400
//       --lora-rank 4 --lora-lr 2e-3 --lora-targets attention|to_q,to_k,to_v,to_out.0,conv1,conv2,… --out out/lora]
//
// Needs Debian's dataset-fashion-mnist (bash eng/install-data.sh).
using System.Globalization;
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;

var options = new LoraTrainingSampleOptions();
string outDir = Path.Combine("out", "lora");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--base" when i + 1 < args.Length: options = options with { BaseModel = args[++i] }; break;
        case "--base-steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int b) && b > 0:
            options = options with { BaseSteps = b }; i++; break;
        case "--lora-steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int l) && l > 0:
            options = options with { LoraSteps = l }; i++; break;
        case "--lora-rank" when i + 1 < args.Length && int.TryParse(args[i + 1], out int r) && r > 0:
            options = options with { LoraRank = r }; i++; break;
        case "--lora-lr" when i + 1 < args.Length && double.TryParse(args[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out double lr) && lr > 0 && lr < 1:
            options = options with { LoraLearningRate = lr }; i++; break;
        case "--lora-targets" when i + 1 < args.Length:
            options = options with { LoraTargets = args[++i] == "attention" ? null : args[i].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) }; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --base ZIP, --base-steps N, --lora-steps N, --lora-rank R (positive), --lora-lr X (in (0, 1)), --lora-targets attention|to_q,conv1,…, --out DIR");
            return 2;
    }
}
if (!FashionMnist.IsAvailable(out string reason))
{
    Console.Error.WriteLine(reason);
    return 1;
}
if (options.BaseModel is { } zip && !File.Exists(zip))
{
    Console.Error.WriteLine($"Base model '{zip}' does not exist.");
    return 1;
}

var result = LoraTrainingSample.Run(outDir, options, Console.Out);
Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
return 0;
