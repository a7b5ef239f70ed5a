// mldiffusion — the Microsoft.ML.Diffusion command line. See README.md beside this file.
using Microsoft.ML.Diffusion.Cli;

using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (cancellation.IsCancellationRequested) return;   // a second Ctrl+C ends the process at once
    e.Cancel = true;
    Console.Error.WriteLine();
    Console.Error.WriteLine("Stopping after the current step (press Ctrl+C again to abort at once)...");
    cancellation.Cancel();
};
return MLDiffusionCli.Run(args, Console.Out, Console.Error, cancellation.Token, interactive: !Console.IsOutputRedirected);
