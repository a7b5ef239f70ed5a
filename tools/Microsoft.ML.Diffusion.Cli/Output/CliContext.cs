using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace Microsoft.ML.Diffusion.Cli.Output;

/// <summary>
/// Where a command writes and how: plain lines when the output is a file, a pipe or a test's writer;
/// Spectre.Console live progress bars when it is a terminal.
/// </summary>
public sealed class CliContext
{
    public CliContext(TextWriter output, TextWriter error, bool interactive, CancellationToken cancellation)
    {
        Out = output;
        Error = error;
        Interactive = interactive;
        Cancellation = cancellation;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        if (!interactive) Console.Profile.Width = 120;
    }

    public TextWriter Out { get; }
    public TextWriter Error { get; }
    public bool Interactive { get; }
    public CancellationToken Cancellation { get; }

    /// <summary>Spectre.Console over <see cref="Out"/>, for tables and live progress.</summary>
    public IAnsiConsole Console { get; }

    /// <summary>Writes a line formatted with the invariant culture (so numbers read the same everywhere).</summary>
    public void Line(FormattableString text) => Out.WriteLine(text.ToString(CultureInfo.InvariantCulture));

    public void Line(string text = "") => Out.WriteLine(text);

    /// <summary>
    /// Runs <paramref name="work"/> with a progress display of <paramref name="total"/> units. The work
    /// reports (done, description); a terminal gets a live bar, other writers a line every tenth or so.
    /// </summary>
    public T WithProgress<T>(string title, int total, Func<Action<int, string>, T> work)
    {
        if (Interactive)
        {
            return Console.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new SpinnerColumn(), new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                    return work((done, description) =>
                    {
                        task.Value = Math.Min(done, total);
                        task.Description = Markup.Escape(description);
                    });
                });
        }

        int every = Math.Max(1, total / 10);
        int next = -1;
        Line($"{title}");
        return work((done, description) =>
        {
            if (next < 0) next = done;                 // first report (may be > 0 when resuming)
            if (done >= next || done >= total)
            {
                Line($"  {description}");
                next = (done / every + 1) * every;
                if (done >= total) next = int.MaxValue;
            }
        });
    }
}

/// <summary>Steps per second over a sliding window of recent reports, and the ETA it implies.</summary>
internal sealed class RateMeter(int window = 50)
{
    private readonly Queue<(double Seconds, int Done)> _recent = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public double PerSecond { get; private set; }

    public void Report(int done)
    {
        _recent.Enqueue((_clock.Elapsed.TotalSeconds, done));
        while (_recent.Count > window) _recent.Dequeue();
        var (t0, d0) = _recent.Peek();
        double dt = _clock.Elapsed.TotalSeconds - t0;
        if (dt > 0 && done > d0) PerSecond = (done - d0) / dt;
    }

    public string Eta(int remaining)
    {
        if (remaining <= 0) return "0s";
        if (!(PerSecond > 0)) return "?";
        return Format(TimeSpan.FromSeconds(remaining / PerSecond));
    }

    public static string Format(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:D2}s" : $"{Math.Max(0, t.Seconds)}s";
}
