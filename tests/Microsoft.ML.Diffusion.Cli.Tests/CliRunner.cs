using Microsoft.ML.Diffusion.Cli;
using SkiaSharp;
using Xunit;

namespace Microsoft.ML.Diffusion.Cli.Tests;

/// <summary>Runs the CLI in-process and captures what it writes.</summary>
public static class CliRunner
{
    public sealed record Outcome(int ExitCode, string Output)
    {
        public override string ToString() => $"exit {ExitCode}:\n{Output}";
    }

    public static Outcome Run(params string[] args)
    {
        var writer = new StringWriter();
        int code = MLDiffusionCli.Run(args, writer);
        return new Outcome(code, writer.ToString());
    }

    public static Outcome Run(CancellationToken token, TextWriter writer, params string[] args)
    {
        int code = MLDiffusionCli.Run(args, writer, writer, token);
        return new Outcome(code, writer.ToString()!);
    }

    public static void Succeeded(Outcome outcome) => Assert.True(outcome.ExitCode == 0, outcome.ToString());

    public static (int Width, int Height) PngSize(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        using var bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        return (bitmap.Width, bitmap.Height);
    }

    /// <summary>Width and height of an ImageGrid PNG: cells of size·scale plus padding 2.</summary>
    public static (int, int) GridSize(int count, int columns, int size, int scale)
    {
        columns = Math.Min(columns, count);
        int rows = (count + columns - 1) / columns;
        return (columns * (size * scale + 2) + 2, rows * (size * scale + 2) + 2);
    }

    /// <summary>The tiny network and run every training test uses.</summary>
    public static string[] TinyTraining(int steps) =>
        ["--size", "16", "--steps", steps.ToString(), "--batch", "16", "--base-channels", "16", "--multipliers", "1,2", "--lr", "2e-3", "--warmup", "5", "--ema", "0.9", "--seed", "1"];
}
