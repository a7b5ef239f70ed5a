using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML.Diffusion.Samples;
using SkiaSharp;
using Xunit;

namespace Microsoft.ML.Diffusion.WebGeneration.Tests;

/// <summary>
/// The web sample on a loopback port over a tiny model trained for two steps: PNG answers of the model's size, the same
/// bytes for the same request alone or among concurrent clients, 400s that say what is wrong, and the event stream.
/// </summary>
public sealed class WebGenerationSampleTests(WebGenerationSampleTests.Server server) : IClassFixture<WebGenerationSampleTests.Server>
{
    private const int Size = 16;

    /// <summary>The app over a model zip written in a temporary folder, and a client of it.</summary>
    public sealed class Server : IAsyncLifetime
    {
        private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-web-").FullName;
        private WebApplication? _app;

        public string Zip => Path.Combine(_folder, "tiny.zip");

        public HttpClient Client { get; } = new();

        public async Task InitializeAsync()
        {
            TinyModels.Train(Zip, Size, scheduleSteps: 50);
            _app = await Start(["--model", Zip, "--MaxSteps", "12"]);
            Client.BaseAddress = Address(_app);
        }

        public static async Task<WebApplication> Start(string[] args)
        {
            var app = WebGenerationApp.Build([.. args, "--urls", "http://127.0.0.1:0"]);
            await app.StartAsync();
            return app;
        }

        public static Uri Address(WebApplication app) => new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());

        public async Task DisposeAsync()
        {
            Client.Dispose();
            if (_app is not null)
            {
                await _app.StopAsync();
                await _app.DisposeAsync();
            }
            Directory.Delete(_folder, recursive: true);
        }
    }

    private HttpClient Client => server.Client;

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private async Task<byte[]> Png(long seed, string sampler = "ddim", int steps = 4)
    {
        using var response = await Client.PostAsync("/generate", Json($"{{\"seed\":{seed},\"steps\":{steps},\"sampler\":\"{sampler}\",\"guidance\":1.0}}"));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsByteArrayAsync();
    }

    private async Task BadRequest(HttpResponseMessage response, string expected)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {body}");
        Assert.Contains(expected, body);
    }

    [Fact]
    public async Task GenerateAnswersAPngOfTheModelsSizeAndTheSameBytesForTheSameRequest()
    {
        byte[] first = await Png(5);
        using (var bitmap = SKBitmap.Decode(first))
        {
            Assert.NotNull(bitmap);
            Assert.Equal((Size, Size), (bitmap.Width, bitmap.Height));
        }
        Assert.Equal(first, await Png(5));
        Assert.NotEqual(first, await Png(6));
    }

    [Fact]
    public async Task ConcurrentClientsGetTheBytesOfTheSameRequestsRunOneAtATime()
    {
        var requests = Enumerable.Range(0, 8).Select(client => Enumerable.Range(0, 4).Select(i => (Seed: (long)(client * 4 + i), Sampler: i % 2 == 0 ? "ddim" : "euler-ancestral")).ToArray()).ToArray();
        var alone = new Dictionary<long, byte[]>();
        foreach (var (seed, sampler) in requests.SelectMany(r => r)) alone[seed] = await Png(seed, sampler);
        var together = await Task.WhenAll(requests.Select(async client =>
        {
            var images = new List<(long, byte[])>();
            foreach (var (seed, sampler) in client) images.Add((seed, await Png(seed, sampler)));
            return images;
        }));
        foreach (var (seed, png) in together.SelectMany(c => c)) Assert.True(alone[seed].AsSpan().SequenceEqual(png), $"seed {seed} differs from its lone run");
    }

    [Fact]
    public async Task BadRequestsAreRefusedWithA400ThatSaysWhy()
    {
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,\"steps\":13}")), "steps must lie in [1, 12]");
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,\"sampler\":\"nonesuch\"}")), "Unknown sampler 'nonesuch'");
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,")), "not a valid request");
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,\"stepz\":3}")), "stepz");
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,\"condition\":3}")), "unconditional");
        await BadRequest(await Client.PostAsync("/generate", Json("{\"seed\":1,\"prompt\":\"a red cat\"}")), "takes no prompt");
        await BadRequest(await Client.GetAsync("/events?seed=1&negativePrompt=blurry"), "takes no prompt");
        await BadRequest(await Client.GetAsync("/events?seed=x"), "'seed' must be a number");
        await BadRequest(await Client.GetAsync("/events?steps=50"), "steps must lie in [1, 12]");
    }

    [Fact]
    public async Task AFullQueueAnswers503WithRetryAfter()
    {
        // One request runs at a time and one may wait: of a dozen sent together, most find the queue full.
        await using var app = await Server.Start(["--model", server.Zip, "--MaxSteps", "50", "--QueueCapacity", "1", "--MaxBatchSize", "1"]);
        using var client = new HttpClient { BaseAddress = Server.Address(app) };
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(seed => client.PostAsync("/generate", Json($"{{\"seed\":{seed},\"steps\":50}}"))));
        try
        {
            var refused = responses.Where(r => r.StatusCode == HttpStatusCode.ServiceUnavailable).ToList();
            Assert.True(refused.Count > 0, string.Join(", ", responses.Select(r => r.StatusCode)));
            Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.ServiceUnavailable }));
            Assert.All(refused, r => Assert.Equal("5", r.Headers.GetValues("Retry-After").Single()));
            Assert.Contains("queue is full", await refused[0].Content.ReadAsStringAsync());
        }
        finally
        {
            foreach (var r in responses) r.Dispose();
        }
    }

    [Fact]
    public async Task EventsStreamProgressThenTheImage()
    {
        using var response = await Client.GetAsync("/events?seed=5&steps=4&sampler=ddim", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => (Name: e.Split('\n')[0]["event: ".Length..], Data: e.Split('\n')[1]["data: ".Length..])).ToList();
        Assert.True(events.Count >= 2, text);
        Assert.All(events[..^1], e => Assert.Equal("progress", e.Name));
        Assert.Equal("{\"done\":4,\"total\":4}", events[^2].Data);
        Assert.Equal("done", events[^1].Name);
        var done = System.Text.Json.JsonDocument.Parse(events[^1].Data).RootElement;
        string url = done.GetProperty("image").GetString()!;
        Assert.StartsWith("data:image/png;base64,", url);
        Assert.Equal(await Png(5), Convert.FromBase64String(url["data:image/png;base64,".Length..]));
    }

    [Fact]
    public async Task ThePageHasAFormAProgressBarAndAnEventSource()
    {
        string page = await Client.GetStringAsync("/");
        foreach (string part in new[] { "<form", "<progress", "new EventSource('/events?'", "<img", "tiny.zip" }) Assert.Contains(part, page);
        Assert.DoesNotContain("http", page.Replace("<html lang=en>", ""), StringComparison.OrdinalIgnoreCase);
    }
}
