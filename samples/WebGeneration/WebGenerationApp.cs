using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Diffusion.Serving;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>
/// A web front for a model zip: <c>POST /generate</c> answers a PNG, <c>GET /events</c> streams progress and then the
/// image as server-sent events, <c>GET /</c> is a page that uses the stream. Every request goes through one
/// <see cref="DiffusionGenerationService"/>, which batches concurrent requests without changing their images. A model zip
/// of a Stable Diffusion <c>DiffusionGenerate</c> stage serves prompts (<c>prompt</c>, <c>negativePrompt</c>).
/// </summary>
/// <remarks>
/// Settings (command line <c>--name value</c>, environment or appsettings): <c>model</c> (the zip, required),
/// <c>MaxSteps</c> (the most steps a request may ask for, 100), <c>QueueCapacity</c> (requests that may wait, 64),
/// <c>MaxBatchSize</c> (requests sampled together, 16).
/// </remarks>
public static class WebGenerationApp
{
    /// <summary>Steps of a request that names none.</summary>
    public const int DefaultSteps = 20;

    /// <summary>Loads the model and maps the endpoints; the caller runs (and disposes) the application.</summary>
    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        string zip = builder.Configuration["model"] is { Length: > 0 } m ? m
            : throw new ArgumentException("Give the model zip: --model <path> (a zip written by 'mldiffusion train' or a sample).");
        if (!File.Exists(zip)) throw new ArgumentException($"Model file '{zip}' does not exist.");
        int maxSteps = Setting(builder.Configuration, "MaxSteps", 100);
        int queueCapacity = Setting(builder.Configuration, "QueueCapacity", 64);
        int maxBatchSize = Setting(builder.Configuration, "MaxBatchSize", 16);

        var model = DiffusionTrainingTransformer.FindModel(new MLContext().Model.Load(zip, out _));
        var served = new ServedModel(model, new DiffusionGenerationService(model, new GenerationServiceOptions { QueueCapacity = queueCapacity, MaxBatchSize = maxBatchSize }), maxSteps);
        // The container disposes what its factory made: the service stops with the application, then the model goes.
        builder.Services.AddSingleton(_ => served);
        var app = builder.Build();
        app.Services.GetRequiredService<ServedModel>();

        string page = IndexPage.Html(Path.GetFileName(zip), model, maxSteps);
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        app.MapPost("/generate", (HttpContext context) => Generate(context, served));
        app.MapGet("/events", (HttpContext context) => Stream(context, served));
        return app;
    }

    private static int Setting(IConfiguration configuration, string name, int fallback)
    {
        string? text = configuration[name];
        if (text is null) return fallback;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) && value > 0 ? value
            : throw new ArgumentException($"{name} must be a positive whole number, not '{text}'.");
    }

    private static async Task Generate(HttpContext context, ServedModel served)
    {
        GenerationParameters? parameters;
        try
        {
            parameters = await JsonSerializer.DeserializeAsync<GenerationParameters>(context.Request.Body, GenerationParameters.Json, context.RequestAborted);
        }
        catch (JsonException e)
        {
            await Error(context, StatusCodes.Status400BadRequest, $"The body is not a valid request: {e.Message} Expected JSON like {{\"seed\": 1, \"steps\": 20, \"sampler\": \"ddim\", \"guidance\": 1.0}}.");
            return;
        }
        if (parameters is null)
        {
            await Error(context, StatusCodes.Status400BadRequest, "The body is null; expected a JSON object.");
            return;
        }
        var image = await Submit(context, served, parameters, progress: null);
        if (image is null) return;
        GeneratedImage result;
        try
        {
            result = await image;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;   // the client left; its request left the service's batch with the same token
        }
        byte[] png = PngEncoder.Encode(result);
        context.Response.ContentType = "image/png";
        await context.Response.Body.WriteAsync(png, context.RequestAborted);
    }

    private static async Task Stream(HttpContext context, ServedModel served)
    {
        GenerationParameters parameters;
        try
        {
            parameters = GenerationParameters.FromQuery(context.Request.Query);
        }
        catch (FormatException e)
        {
            await Error(context, StatusCodes.Status400BadRequest, e.Message);
            return;
        }
        var progress = new ProgressChannel();
        var image = await Submit(context, served, parameters, progress);
        if (image is null) return;
        _ = image.ContinueWith(_ => progress.Complete(), TaskScheduler.Default);

        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        var token = context.RequestAborted;
        try
        {
            await foreach (var p in progress.Reader.ReadAllAsync(token))
                await Event(response, "progress", $"{{\"done\":{p.StepsDone},\"total\":{p.TotalSteps}}}", token);
            var result = await image;
            string url = "data:image/png;base64," + Convert.ToBase64String(PngEncoder.Encode(result));
            await Event(response, "done", JsonSerializer.Serialize(new { image = url, width = result.Width, height = result.Height }), token);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The client left; its request left the service's batch with the same token.
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await Event(response, "failed", JsonSerializer.Serialize(new { error = e.Message }), token);
        }
    }

    // Checks the request at the edge and queues it; null means an error was answered. The request's abort token flows into
    // the service, so a client that disconnects frees its row in the batch.
    private static async Task<Task<GeneratedImage>?> Submit(HttpContext context, ServedModel served, GenerationParameters parameters, IProgress<GenerationProgress>? progress)
    {
        int steps = parameters.Steps ?? Math.Min(DefaultSteps, served.MaxSteps);
        if (steps < 1 || steps > served.MaxSteps)
        {
            await Error(context, StatusCodes.Status400BadRequest, $"steps must lie in [1, {served.MaxSteps}] on this server, not {steps}.");
            return null;
        }
        if (parameters.Sampler is { } name && !DiffusionSamplers.IsRegistered(name))
        {
            await Error(context, StatusCodes.Status400BadRequest, $"Unknown sampler '{name}' (known: {string.Join(", ", DiffusionSamplers.Names)}).");
            return null;
        }
        if (served.Model.TakesPrompts && parameters.Condition is not null)
        {
            await Error(context, StatusCodes.Status400BadRequest, "This model takes prompts, not a class condition; send 'prompt' (and 'negativePrompt') instead.");
            return null;
        }
        if (!served.Model.TakesPrompts && (parameters.Prompt is not null || parameters.NegativePrompt is not null))
        {
            await Error(context, StatusCodes.Status400BadRequest, "This model takes no prompt (it has no text encoder); send only a seed" + (served.Model.Network.IsConditional ? " and a class condition." : "."));
            return null;
        }
        if (parameters.Condition is not null && !served.Model.Network.IsConditional)
        {
            await Error(context, StatusCodes.Status400BadRequest, "This model is unconditional; it takes no condition.");
            return null;
        }
        var options = new GenerationOptions { Steps = steps, GuidanceScale = parameters.Guidance };
        if (parameters.Sampler is { } sampler) options.Sampler = sampler;
        using var scope = NewDisposeScope();
        using var condition = parameters.Condition is { } label ? ConditionBatch.Classes(tensor(new[] { label })) : null;
        try
        {
            // The service copies the condition when it queues the request, so it is disposed here.
            var request = new GenerationRequest { Seed = parameters.Seed, Options = options, Condition = condition, Prompt = parameters.Prompt, NegativePrompt = parameters.NegativePrompt };
            return served.Service.GenerateAsync(request, progress, context.RequestAborted);
        }
        catch (ArgumentException e)
        {
            await Error(context, StatusCodes.Status400BadRequest, e.Message);
        }
        catch (GenerationQueueFullException e)
        {
            context.Response.Headers.RetryAfter = "5";
            await Error(context, StatusCodes.Status503ServiceUnavailable, e.Message);
        }
        return null;
    }

    private static Task Error(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new { error = message }, context.RequestAborted);
    }

    private static async Task Event(HttpResponse response, string name, string json, CancellationToken token)
    {
        await response.WriteAsync($"event: {name}\ndata: {json}\n\n", token);
        await response.Body.FlushAsync(token);
    }

    /// <summary>The model and its service, disposed together when the application stops.</summary>
    internal sealed class ServedModel(DiffusionModel model, DiffusionGenerationService service, int maxSteps) : IDisposable
    {
        public DiffusionModel Model { get; } = model;
        public DiffusionGenerationService Service { get; } = service;
        public int MaxSteps { get; } = maxSteps;

        public void Dispose()
        {
            Service.Dispose();
            Model.Dispose();
        }
    }
}
