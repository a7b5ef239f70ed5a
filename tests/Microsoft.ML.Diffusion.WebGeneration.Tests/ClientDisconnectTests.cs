using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML.Diffusion.Samples;
using Microsoft.ML.Diffusion.Serving;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.Diffusion.WebGeneration.Tests;

/// <summary>
/// A client that closes its connection mid-request cancels its work: the service's worker stops sampling the request within
/// about a step, and the next request, which cannot join the abandoned one's batch, starts at once.
/// </summary>
public sealed class ClientDisconnectTests(ClientDisconnectTests.Server server, ITestOutputHelper output) : IClassFixture<ClientDisconnectTests.Server>
{
    private const int SlowSteps = 1000;

    /// <summary>The app over a tiny model with a 1000-step schedule, so one request can run long.</summary>
    public sealed class Server : IAsyncLifetime
    {
        private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-web-cancel-").FullName;

        public WebApplication App { get; private set; } = null!;

        public DiffusionGenerationService Service => App.Services.GetRequiredService<WebGenerationApp.ServedModel>().Service;

        public async Task InitializeAsync()
        {
            string zip = Path.Combine(_folder, "slow.zip");
            TinyModels.Train(zip, size: 32, scheduleSteps: SlowSteps);
            App = await WebGenerationSampleTests.Server.Start(["--model", zip, "--MaxSteps", SlowSteps.ToString()]);
        }

        public async Task DisposeAsync()
        {
            await App.StopAsync();
            await App.DisposeAsync();
            Directory.Delete(_folder, recursive: true);
        }
    }

    [Theory]
    [InlineData("events")]
    [InlineData("generate")]
    public async Task AClientThatLeavesCancelsItsRequestWithinAboutAStep(string endpoint)
    {
        // Every network forward of the worker, with its time: the slow request's steps, then the next request's one step.
        var steps = new List<long>();
        server.Service.OnBatchStep = _ => { lock (steps) steps.Add(Stopwatch.GetTimestamp()); };
        try
        {
            using var client = new HttpClient { BaseAddress = WebGenerationSampleTests.Server.Address(server.App) };
            using var leave = new CancellationTokenSource();
            Task slow = endpoint == "events"
                ? ReadEvents(client, $"/events?seed=1&steps={SlowSteps}&sampler=ddim", leave.Token)
                : client.PostAsync("/generate", Json(1, SlowSteps), leave.Token);
            var watch = Stopwatch.StartNew();
            while (Count(steps) < 5)
            {
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), "the slow request did not start");
                Assert.False(slow.IsCompleted, $"the slow request ended early: {slow.Status}");
                await Task.Delay(5);
            }
            int before = Count(steps);
            long left = Stopwatch.GetTimestamp();
            leave.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => slow);

            // One step of another kind cannot join the slow request's batch: it starts only once that request has left.
            long sent = Stopwatch.GetTimestamp();
            using var next = await client.PostAsync("/generate", Json(2, 1));
            Assert.Equal(HttpStatusCode.OK, next.StatusCode);
            double nextMs = Stopwatch.GetElapsedTime(sent).TotalMilliseconds;

            long[] times;
            lock (steps) times = [.. steps];
            int slowSteps = times.Length - 1;
            double stepMs = (times[before - 1] - times[0]) * 1000.0 / Stopwatch.Frequency / (before - 1);
            int afterLeaving = slowSteps - before;
            double lastStepAfterLeavingMs = (times[slowSteps - 1] - left) * 1000.0 / Stopwatch.Frequency;
            output.WriteLine($"{endpoint}: {before} steps before the client left ({stepMs:F1} ms each), {afterLeaving} after it (the last began {lastStepAfterLeavingMs:F0} ms after); the next request took {nextMs:F0} ms");
            Assert.True(slowSteps < SlowSteps, $"the abandoned request ran all its {SlowSteps} steps");
            Assert.True(afterLeaving <= 3, $"the abandoned request ran {afterLeaving} more steps after its client left (a step takes {stepMs:F1} ms)");
        }
        finally
        {
            server.Service.OnBatchStep = null;
        }
    }

    private static int Count(List<long> steps)
    {
        lock (steps) return steps.Count;
    }

    private static StringContent Json(long seed, int steps) => new($"{{\"seed\":{seed},\"steps\":{steps},\"sampler\":\"ddim\"}}", Encoding.UTF8, "application/json");

    // Reads the event stream until cancelled; cancelling a pending read closes the connection.
    private static async Task ReadEvents(HttpClient client, string url, CancellationToken token)
    {
        using var response = await client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var stream = await response.Content.ReadAsStreamAsync(token);
        var buffer = new byte[4096];
        while (await stream.ReadAsync(buffer, token) > 0) { }
        Assert.Fail("the event stream ended before the client left");
    }
}
