using System.CommandLine;
using Microsoft.ML.Diffusion.Cli.Commands;
using Microsoft.ML.Diffusion.Cli.Output;

namespace Microsoft.ML.Diffusion.Cli;

/// <summary>
/// The <c>mldiffusion</c> command line, callable in-process: <c>Run</c> parses the arguments,
/// runs one verb (train, generate, edit, evaluate, info, import, export) and returns its exit code — 0 on success, 1 for
/// runtime errors, 2 for usage errors, 130 when cancelled.
/// </summary>
public static class MLDiffusionCli
{
    /// <summary>Runs the command line with everything written to <paramref name="output"/>.</summary>
    public static int Run(string[] args, TextWriter output) => Run(args, output, output);

    /// <summary>Runs the command line.</summary>
    /// <param name="args">The arguments, verb first.</param>
    /// <param name="output">Normal output (progress, tables, results).</param>
    /// <param name="error">Error messages.</param>
    /// <param name="cancellationToken">Cancels training or generation between steps (Ctrl+C in the tool); the verb returns 130.</param>
    /// <param name="interactive">Draw live progress bars (the output is a terminal) instead of periodic lines.</param>
    public static int Run(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default, bool interactive = false)
    {
        ArgumentNullException.ThrowIfNull(args);
        var ctx = new CliContext(output, error, interactive, cancellationToken);
        int Guard(Func<int> body) => RunGuarded(body, ctx);

        var root = new RootCommand("mldiffusion: train, generate, edit, evaluate and inspect Microsoft.ML.Diffusion models, and import and export Hugging Face diffusers folders.")
        {
            TrainCommand.Create(Guard, ctx),
            GenerateCommand.Create(Guard, ctx),
            EditCommand.Create(Guard, ctx),
            EvaluateCommand.Create(Guard, ctx),
            InfoCommand.Create(Guard, ctx),
            ImportCommand.Create(Guard, ctx),
            ExportCommand.Create(Guard, ctx),
        };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // An unknown verb makes System.CommandLine report a missing command and every later token; say what it is instead.
            if (UnknownVerb(parse, root, args) is { } unknown)
            {
                error.WriteLine($"error: Unknown command '{unknown}'. The commands are: {string.Join(", ", root.Subcommands.Select(c => c.Name))}.");
                error.WriteLine("Run 'mldiffusion --help' for usage.");
                return ExitCodes.UsageError;
            }
            foreach (var e in parse.Errors) error.WriteLine($"error: {e.Message}");
            string verb = parse.CommandResult.Command is { } c && c != root ? $"{c.Name} " : "";
            error.WriteLine($"Run 'mldiffusion {verb}--help' for usage.");
            return ExitCodes.UsageError;
        }
        return parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
    }

    // The first argument when it is neither a verb nor an option: what the user meant as the verb.
    private static string? UnknownVerb(ParseResult parse, RootCommand root, string[] args)
        => args.Length > 0 && parse.CommandResult.Command == root && !args[0].StartsWith('-') && parse.UnmatchedTokens.Contains(args[0]) ? args[0] : null;

    private static int RunGuarded(Func<int> body, CliContext ctx)
    {
        try
        {
            return body();
        }
        catch (UsageException e)
        {
            ctx.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.UsageError;
        }
        catch (Exception e) when (Errors.IsCancellation(e))
        {
            ctx.Error.WriteLine("Cancelled.");
            return ExitCodes.Cancelled;
        }
        catch (CliRuntimeException e)
        {
            ctx.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.RuntimeError;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            ctx.Error.WriteLine($"error: {Errors.Innermost(e)}");
            return ExitCodes.RuntimeError;
        }
    }
}
