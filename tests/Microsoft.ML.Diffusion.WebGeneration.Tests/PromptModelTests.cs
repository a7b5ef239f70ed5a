using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML.Diffusion.Samples;
using SkiaSharp;
using Xunit;

namespace Microsoft.ML.Diffusion.WebGeneration.Tests;

/// <summary>
/// The app over a Stable Diffusion model zip (a DiffusionGenerate stage with prompt columns that refers to the tiny SD 1.x
/// folder): prompts in, PNGs of the model's size out, the same bytes for the same request, and a page that asks for a prompt.
/// </summary>
public sealed class PromptModelTests(PromptModelTests.Server server) : IClassFixture<PromptModelTests.Server>
{
    /// <summary>The app over the SD stage's zip, and a client of it.</summary>
    public sealed class Server : IAsyncLifetime
    {
        private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-web-sd-").FullName;

        public WebApplication App { get; private set; } = null!;

        public HttpClient Client { get; } = new();

        public async Task InitializeAsync()
        {
            string zip = Path.Combine(_folder, "sd1-tiny.zip");
            TinyModels.StableDiffusionStage(zip);
            App = await WebGenerationSampleTests.Server.Start(["--model", zip, "--MaxSteps", "8"]);
            Client.BaseAddress = WebGenerationSampleTests.Server.Address(App);
        }

        public async Task DisposeAsync()
        {
            Client.Dispose();
            await App.StopAsync();
            await App.DisposeAsync();
            Directory.Delete(_folder, recursive: true);
        }
    }

    private static string Body(long seed, string prompt, string negative, double guidance = 5)
        => JsonSerializer.Serialize(new { seed, steps = 4, sampler = "ddim", prompt, negativePrompt = negative, guidance });

    private async Task<byte[]> Png(string body)
    {
        using var response = await server.Client.PostAsync("/generate", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsByteArrayAsync();
    }

    [Fact]
    public async Task PromptsGiveAPngOfTheModelsSizeAndTheSameBytesForTheSameRequest()
    {
        var model = server.App.Services.GetRequiredService<WebGenerationApp.ServedModel>().Model;
        Assert.True(model.TakesPrompts);
        Assert.Equal(new long[] { 3, 64, 64 }, model.ImageShape);

        byte[] first = await Png(Body(3, "a red cat", "blurry"));
        using (var bitmap = SKBitmap.Decode(first))
        {
            Assert.NotNull(bitmap);
            Assert.Equal((64, 64), (bitmap.Width, bitmap.Height));
            Assert.Contains(Enumerable.Range(0, 64).Select(i => bitmap.GetPixel(i, i)), c => c.Red != c.Green || c.Green != c.Blue);   // colour, not grey
        }
        Assert.Equal(first, await Png(Body(3, "a red cat", "blurry")));
        Assert.NotEqual(first, await Png(Body(3, "a blue dog", "blurry")));
        Assert.NotEqual(first, await Png(Body(3, "a red cat", "")));
        Assert.NotEqual(first, await Png(Body(4, "a red cat", "blurry")));
        Assert.NotEqual(first, await Png(Body(3, "a red cat", "blurry", guidance: 1)));
    }

    [Fact]
    public async Task TheEventStreamTakesThePromptInItsQuery()
    {
        string text = await server.Client.GetStringAsync("/events?seed=3&steps=4&sampler=ddim&prompt=a%20red%20cat&negativePrompt=blurry&guidance=5");
        string done = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[^1];
        Assert.StartsWith("event: done\n", done);
        string url = JsonDocument.Parse(done.Split('\n')[1]["data: ".Length..]).RootElement.GetProperty("image").GetString()!;
        Assert.Equal(await Png(Body(3, "a red cat", "blurry")), Convert.FromBase64String(url["data:image/png;base64,".Length..]));
    }

    [Fact]
    public async Task APromptModelRefusesAClassCondition()
    {
        using var response = await server.Client.PostAsync("/generate", new StringContent("{\"seed\":1,\"condition\":2}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("takes prompts", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ThePageAsksForAPromptAndANegativePrompt()
    {
        string page = await server.Client.GetStringAsync("/");
        foreach (string part in new[] { "<input name=prompt", "<input name=negativePrompt", "sd1-tiny.zip", "3×64×64" }) Assert.Contains(part, page);
        Assert.DoesNotContain("name=condition", page);
    }
}
