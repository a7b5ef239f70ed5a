namespace Microsoft.ML.Diffusion.Cli;

/// <summary>Exit codes of <c>mldiffusion</c>.</summary>
public static class ExitCodes
{
    /// <summary>The command finished.</summary>
    public const int Success = 0;
    /// <summary>Something failed while running (unreadable data, a zip that is not a diffusion model, …).</summary>
    public const int RuntimeError = 1;
    /// <summary>The command line is wrong: unknown option or value, bad number, missing file or folder.</summary>
    public const int UsageError = 2;
    /// <summary>Stopped by Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;
}

/// <summary>A problem with the command line; reported as "error: …" with exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>A runtime failure whose message already says everything (no unwrapping); exit code 1.</summary>
public sealed class CliRuntimeException(string message, Exception? inner = null) : Exception(message, inner);

internal static class Errors
{
    /// <summary>
    /// The most specific message of an exception chain (ML.NET wraps loader failures several levels deep), as
    /// <see cref="ErrorText.Of"/> words it. A message that quotes its cause's is the more specific one (e.g. a failed
    /// save names the file and what became of it, then the system's error).
    /// </summary>
    public static string Innermost(Exception e)
    {
        while (true)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } a) { e = a.InnerExceptions[0]; continue; }
            if (e is System.Reflection.TargetInvocationException { InnerException: { } t }) { e = t; continue; }
            if (e.InnerException is null || e.Message.Contains(e.InnerException.Message.TrimEnd('.'), StringComparison.Ordinal)) return ErrorText.Of(e);
            e = e.InnerException;
        }
    }

    /// <summary>True when the chain holds a cancellation (ML.NET sometimes wraps it).</summary>
    public static bool IsCancellation(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is OperationCanceledException) return true;
        return false;
    }
}
