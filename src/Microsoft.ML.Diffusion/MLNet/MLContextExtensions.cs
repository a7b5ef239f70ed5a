using Microsoft.ML.Diffusion.MLNet;

namespace Microsoft.ML;

/// <summary>Conveniences on <see cref="MLContext"/>.</summary>
public static class MLContextExtensions
{
    /// <summary>
    /// Asks every running operation of this context — training or generation included — to stop; they
    /// throw <see cref="OperationCanceledException"/> at their next check (between training or sampling
    /// steps). ML.NET 5 keeps <c>MLContext.CancelExecution</c> internal; this makes it callable.
    /// </summary>
    public static void CancelExecution(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        // MLContext.CancelExecution is internal in ML.NET 5; this assembly sees it through the publicized
        // reference (MLNet/Internal), so this calls the instance method, not itself.
        mlContext.CancelExecution();
    }
}
