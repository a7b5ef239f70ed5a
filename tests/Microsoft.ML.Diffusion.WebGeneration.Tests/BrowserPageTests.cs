using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Playwright;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.Diffusion.WebGeneration.Tests;

/// <summary>
/// The page in a real browser (the system's headless Chromium, driven by Playwright): the form is filled and sent, the
/// progress bar moves through the steps, and the image appears. Skipped where Chromium is not installed.
/// </summary>
/// <remarks>
/// With <c>MLDIFFUSION_SCREENSHOT_DIR</c> set the finished page is saved there as <c>serving-page.png</c> (docs/images
/// holds one); <c>MLDIFFUSION_SCREENSHOT_MODEL</c> serves another model zip instead of the test's tiny one, e.g. a trained
/// shapes model whose images show something. Give both as absolute paths: the test runs in its output folder.
/// </remarks>
public sealed class BrowserPageTests(ITestOutputHelper output)
{
    private const string Chromium = "/usr/bin/chromium";

    [SkippableFact]
    public async Task ThePageShowsProgressThenTheImage()
    {
        Skip.IfNot(File.Exists(Chromium), $"{Chromium} is missing; install it with 'apt-get install -y chromium' (or 'bash eng/install-browser.sh').");
        // Playwright runs the installed browser; it must never fetch one of its own.
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");

        string folder = Directory.CreateTempSubdirectory("mldiffusion-web-browser-").FullName;
        try
        {
            string zip = Path.Combine(folder, "tiny.zip");
            if (Environment.GetEnvironmentVariable("MLDIFFUSION_SCREENSHOT_MODEL") is { Length: > 0 } given)
                zip = File.Exists(given) ? given : throw new FileNotFoundException($"MLDIFFUSION_SCREENSHOT_MODEL names '{given}', which does not exist (relative paths start from the test's output folder).");
            else
                TinyModels.Train(zip, size: 16, scheduleSteps: 50);
            await using var app = await WebGenerationSampleTests.Server.Start(["--model", zip, "--MaxSteps", "50"]);

            using var playwright = await Microsoft.Playwright.Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = Chromium, Headless = true });
            var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 760, Height = 720 } });
            var errors = new List<string>();
            page.PageError += (_, e) => errors.Add(e);
            page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };

            await page.GotoAsync(WebGenerationSampleTests.Server.Address(app).ToString());
            // Every value the progress bar takes (setting its value property sets the attribute the observer sees).
            await page.EvaluateAsync("""
                () => {
                  const bar = document.getElementById('progress');
                  window.progressSeen = [];
                  new MutationObserver(() => window.progressSeen.push([bar.value, bar.max])).observe(bar, { attributes: true });
                }
                """);
            await page.FillAsync("input[name=seed]", "6");
            await page.FillAsync("input[name=steps]", "50");
            await page.SelectOptionAsync("select[name=sampler]", "ddim");
            await page.ClickAsync("button");

            await page.WaitForFunctionAsync("() => document.getElementById('image').naturalWidth > 0", null, new PageWaitForFunctionOptions { Timeout = 120_000 });
            Assert.Equal("done", await page.TextContentAsync("#status"));
            Assert.Equal("", await page.TextContentAsync("#message"));
            var seen = JsonSerializer.Deserialize<double[][]>(await page.EvaluateAsync<string>("() => JSON.stringify(window.progressSeen)"))!;
            output.WriteLine($"progress values seen: {string.Join(", ", seen.Select(v => $"{v[0]}/{v[1]}"))}");
            Assert.Contains(seen, v => v[1] == 50 && v[0] > 0 && v[0] < 50);
            Assert.Equal(50, seen[^1][0]);
            Assert.True(await page.EvaluateAsync<int>("() => document.getElementById('image').naturalWidth") > 0);
            Assert.Empty(errors);

            if (Environment.GetEnvironmentVariable("MLDIFFUSION_SCREENSHOT_DIR") is { Length: > 0 } dir)
            {
                string path = Path.Combine(dir, "serving-page.png");
                await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
                output.WriteLine($"wrote {path}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
