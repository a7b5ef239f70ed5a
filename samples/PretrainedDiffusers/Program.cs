// Pretrained diffusers models in an ML.NET pipeline: a Hugging Face diffusers folder (UNet2DModel + scheduler), such as
// google/ddpm-cifar10-32, generates through DiffusionGenerate and is saved and reloaded as an ML.NET model zip.
//
//   dotnet run --project samples/PretrainedDiffusers -c Release -- <diffusers folder> [--count 16 --steps 50 --out out/pretrained-diffusers]
//
// Getting google/ddpm-cifar10-32 on a machine that can reach the Hugging Face Hub (then copy the folder here), in Python:
//   from huggingface_hub import snapshot_download; snapshot_download("google/ddpm-cifar10-32", local_dir="ddpm-cifar10-32")
using Microsoft.ML.Diffusion.Samples;

string? folder = null;
int count = 16, steps = PretrainedDiffusersSample.DefaultSteps;
string outDir = Path.Combine("out", "pretrained-diffusers");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--count" when i + 1 < args.Length && int.TryParse(args[i + 1], out int c) && c > 0: count = c; i++; break;
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0: steps = s; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        case var a when !a.StartsWith("--") && folder is null: folder = a; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Usage: <diffusers folder> [--count N] [--steps N] [--out DIR]");
            return 2;
    }
}

if (folder is null || !Directory.Exists(folder))
{
    Console.WriteLine(folder is null ? "Give the path of a downloaded diffusers model folder, e.g. google/ddpm-cifar10-32." : $"The diffusers folder '{folder}' does not exist.");
    Console.WriteLine("On a machine that can reach the Hugging Face Hub, download it in Python (pip install huggingface_hub):");
    Console.WriteLine("  from huggingface_hub import snapshot_download; snapshot_download(\"google/ddpm-cifar10-32\", local_dir=\"ddpm-cifar10-32\")");
    Console.WriteLine("then run: dotnet run --project samples/PretrainedDiffusers -c Release -- ddpm-cifar10-32");
    return 1;
}

var result = PretrainedDiffusersSample.Run(folder, outDir, count, steps, Console.Out);
Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
return 0;
