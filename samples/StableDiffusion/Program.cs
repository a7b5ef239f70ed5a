// Stable Diffusion 1.x / 2.x in an ML.NET pipeline: prompt rows → DiffusionGenerate (an image column) → ResizeImages
// (thumbnails); each image is written as a PNG, and the fitted pipeline is saved as a model zip that refers to the model's
// files and is loaded back in a fresh MLContext. Minutes per 512×512 image on a CPU; far less on a CUDA GPU.
//
//   dotnet run --project samples/StableDiffusion -c Release -- <model folder> [--prompt TEXT]… [--negative TEXT]
//       [--steps 25] [--guidance 7.5] [--width W --height H | --size N] [--seed 42] [--thumbnail 128] [--out out/stable-diffusion]
//   dotnet run --project samples/StableDiffusion -c Release -- <model.safetensors> --tokenizer <diffusers SD folder>/tokenizer …
//
// Without a model it says how to get one.
using Microsoft.ML.Diffusion.Samples;

string? model = null;
var prompts = new List<string>();
var options = new StableDiffusionOptions();
string outDir = Path.Combine("out", "stable-diffusion");
const string Usage = "Usage: <model folder or .safetensors/.ckpt file> [--tokenizer DIR] [--prompt TEXT]… [--negative TEXT] [--steps N] [--guidance X] " +
                     "[--width N] [--height N] [--size N] [--seed N] [--thumbnail N] [--out DIR]";
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--tokenizer" when i + 1 < args.Length: options.TokenizerFolder = args[++i]; break;
        case "--prompt" when i + 1 < args.Length: prompts.Add(args[++i]); break;
        case "--negative" when i + 1 < args.Length: options.NegativePrompt = args[++i]; break;
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0: options.Steps = s; i++; break;
        case "--guidance" when i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out double g) && g >= 0: options.Guidance = g; i++; break;
        case "--width" when i + 1 < args.Length && IsSize(args[i + 1], out int w): options.Width = w; i++; break;
        case "--height" when i + 1 < args.Length && IsSize(args[i + 1], out int h): options.Height = h; i++; break;
        case "--size" when i + 1 < args.Length && IsSize(args[i + 1], out int n): options.Width = options.Height = n; i++; break;
        case "--seed" when i + 1 < args.Length && long.TryParse(args[i + 1], out long seed): options.Seed = seed; i++; break;
        case "--thumbnail" when i + 1 < args.Length && int.TryParse(args[i + 1], out int t) && t > 0: options.ThumbnailWidth = t; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        case var a when !a.StartsWith("--") && model is null: model = a; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}' (sizes are positive multiples of 8). {Usage}");
            return 2;
    }
}
if (prompts.Count > 0) options.Prompts = prompts;

if (model is null || !Directory.Exists(model) && !File.Exists(model))
{
    Console.WriteLine(model is null ? "Give the path of a Stable Diffusion 1.x or 2.x model." : $"The model '{model}' does not exist (neither a folder nor a file).");
    Console.WriteLine("The sample reads either");
    Console.WriteLine("  - a diffusers-format folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), or");
    Console.WriteLine("  - a single .safetensors (or .ckpt) checkpoint plus --tokenizer <the tokenizer/ folder of a diffusers SD model of the same version>.");
    Console.WriteLine("To get one, download a diffusers-format model from the Hugging Face Hub on a machine that can reach it, e.g.");
    Console.WriteLine("stable-diffusion-v1-5/stable-diffusion-v1-5 (SD 1.5, 512×512) or stabilityai/stable-diffusion-2-1-base (SD 2.1, 512×512),");
    Console.WriteLine("with the Hub's command-line tool (pip install huggingface_hub), fetching only the float32 safetensors the sample needs:");
    Console.WriteLine("  huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir sd15 --include model_index.json \"scheduler/*\" \"tokenizer/*\" \\");
    Console.WriteLine("    \"text_encoder/config.json\" \"text_encoder/model.safetensors\" \"unet/config.json\" \"unet/diffusion_pytorch_model.safetensors\" \\");
    Console.WriteLine("    \"vae/config.json\" \"vae/diffusion_pytorch_model.safetensors\"");
    Console.WriteLine("or clone the model's repository with git and git lfs (much larger: it holds every variant and single-file checkpoint), then copy the folder here and run:");
    Console.WriteLine("  dotnet run --project samples/StableDiffusion -c Release -- sd15");
    return 1;
}
if (File.Exists(model) && options.TokenizerFolder is null)
{
    Console.WriteLine($"'{model}' is a single checkpoint file, which holds no tokenizer: add --tokenizer <the tokenizer/ folder of a diffusers Stable Diffusion model of the same version>,");
    Console.WriteLine("e.g. the tokenizer/ folder of stable-diffusion-v1-5/stable-diffusion-v1-5 for an SD 1.x file (huggingface-cli download … --include \"tokenizer/*\").");
    return 1;
}

try
{
    var result = StableDiffusionSample.Run(model, outDir, options, Console.Out);
    Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
    return 0;
}
catch (Exception e) when (e is Microsoft.ML.Diffusion.Checkpoints.CheckpointFormatException or IOException or ArgumentException)
{
    // A file that is not a Stable Diffusion 1.x/2.x model (another family, a truncated download, a wrong tokenizer): the library names the problem.
    Console.WriteLine($"Could not use '{model}': {e.Message}");
    return 1;
}

static bool IsSize(string text, out int value) => int.TryParse(text, out value) && value > 0 && value % 8 == 0;
