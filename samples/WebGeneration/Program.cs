using Microsoft.ML.Diffusion.Samples;

// dotnet run --project samples/WebGeneration -c Release -- --model model.zip [--urls http://127.0.0.1:5000] [--MaxSteps 100]
try
{
    using var app = WebGenerationApp.Build(args);
    app.Run();
    return 0;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
