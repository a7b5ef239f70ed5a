// Text to image on real data: emoji pictures and their names, from the npm package emoji-datasource-google.
//
//   bash eng/install-data.sh                      # once: installs the emoji data
//   dotnet run --project samples/EmojiTextToImage -c Release [-- --steps 2400 --out out/emoji-text-to-image --max-images N]
//
// 1. loads about 1,900 emoji (64×64 PNG) with captions such as "grinning face smiling" (name + subcategory);
// 2. trains with LoadImages → ResizeImages (32×32) → TokenizeIntoWords → MapValueToKey → TrainDiffusion,
//    a UNet conditioned on the caption through a small text encoder, and saves the model zip;
// 3. loads the zip and draws 16 fixed prompts × 4 seeds at guidance 3 and 1 with DiffusionGenerate, and
//    writes PNG grids of them, a grid of the real emoji for the same prompts, and prompts.txt.
using Microsoft.ML.Diffusion.SampleData;
using Microsoft.ML.Diffusion.Samples;

int steps = EmojiTextToImageSample.DefaultSteps;
int? maxImages = null;
string outDir = Path.Combine("out", "emoji-text-to-image");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], out int s) && s > 0: steps = s; i++; break;
        case "--max-images" when i + 1 < args.Length && int.TryParse(args[i + 1], out int m) && m >= EmojiTextToImageSample.DefaultPrompts.Count: maxImages = m; i++; break;
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        default:
            Console.Error.WriteLine($"Unknown or incomplete option '{args[i]}'. Options: --steps N (positive), --out DIR, --max-images N (at least {EmojiTextToImageSample.DefaultPrompts.Count})");
            return 2;
    }
}

if (!EmojiDataset.IsAvailable(out string reason))
{
    Console.Error.WriteLine(reason);
    return 1;
}
var result = EmojiTextToImageSample.Run(outDir, steps, Console.WriteLine, maxImages);
Console.WriteLine($"Outputs are in {Path.GetFullPath(result.OutputFolder)}");
return 0;
