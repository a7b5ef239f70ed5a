using System.Globalization;
using SkiaSharp;

namespace Microsoft.ML.Diffusion.Cli.Output;

/// <summary>
/// Draws a training-loss curve as a PNG with SkiaSharp 3 (the version ML.NET's ImageAnalytics uses):
/// the per-step loss as a faint line, a moving average on top, axes with ticks and labels.
/// </summary>
public static class LossPlot
{
    /// <summary>Writes <paramref name="points"/> (step, loss) to <paramref name="path"/>.</summary>
    public static void Save(IReadOnlyList<(int Step, double Loss)> points, string path, string title = "Training loss", int width = 900, int height = 520)
    {
        var finite = points.Where(p => double.IsFinite(p.Loss)).ToArray();
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);

        const float left = 80, right = 30, top = 50, bottom = 60;
        var plot = new SKRect(left, top, width - right, height - bottom);
        using var typeface = LoadTypeface();
        using var text = new SKPaint { Color = new SKColor(40, 40, 40), IsAntialias = true };
        using var textFont = new SKFont(typeface, 14);
        using var titlePaint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var titlePaintFont = new SKFont(typeface, 18) { Embolden = true };
        using var grid = new SKPaint { Color = new SKColor(225, 225, 225), StrokeWidth = 1, IsAntialias = true, Style = SKPaintStyle.Stroke };
        using var axis = new SKPaint { Color = new SKColor(60, 60, 60), StrokeWidth = 1.5f, IsAntialias = true, Style = SKPaintStyle.Stroke };

        canvas.DrawText(title, left, top - 18, titlePaintFont, titlePaint);
        if (finite.Length == 0)
        {
            canvas.DrawText("no finite loss values were reported", plot.MidX - 130, plot.MidY, textFont, text);
        }
        else
        {
            double xMin = finite[0].Step, xMax = Math.Max(finite[^1].Step, xMin + 1);
            double yMax = NiceCeiling(finite.Max(p => p.Loss)), yMin = 0;
            float X(double step) => plot.Left + (float)((step - xMin) / (xMax - xMin)) * plot.Width;
            float Y(double loss) => plot.Bottom - (float)((loss - yMin) / (yMax - yMin)) * plot.Height;

            foreach (double y in Ticks(yMin, yMax, 6))
            {
                canvas.DrawLine(plot.Left, Y(y), plot.Right, Y(y), grid);
                string label = y.ToString(yMax < 0.1 ? "0.000" : "0.00", CultureInfo.InvariantCulture);
                canvas.DrawText(label, plot.Left - 10 - textFont.MeasureText(label), Y(y) + 5, textFont, text);
            }
            foreach (double x in Ticks(xMin, xMax, 8).Where(x => x >= xMin))
            {
                canvas.DrawLine(X(x), plot.Top, X(x), plot.Bottom, grid);
                string label = x.ToString("0", CultureInfo.InvariantCulture);
                canvas.DrawText(label, X(x) - textFont.MeasureText(label) / 2, plot.Bottom + 20, textFont, text);
            }
            canvas.DrawRect(plot, axis);

            DrawLine(canvas, finite.Select(p => new SKPoint(X(p.Step), Y(p.Loss))), new SKColor(120, 160, 220), 1f);
            int window = Math.Max(1, finite.Length / 25);
            var smoothed = MovingAverage(finite.Select(p => p.Loss).ToArray(), window);
            DrawLine(canvas, finite.Select((p, i) => new SKPoint(X(p.Step), Y(smoothed[i]))), new SKColor(200, 60, 40), 2.5f);

            string legend = window > 1 ? string.Create(CultureInfo.InvariantCulture, $"loss per step (blue), moving average over {window} points (red); last {finite[^1].Loss:0.0000}")
                                       : string.Create(CultureInfo.InvariantCulture, $"loss per report; last {finite[^1].Loss:0.0000}");
            canvas.DrawText(legend, plot.Right - textFont.MeasureText(legend), top - 18, textFont, text);
        }
        canvas.DrawText("step", plot.MidX - 15, height - 18, textFont, text);
        canvas.Save();
        canvas.RotateDegrees(-90);
        canvas.DrawText("MSE loss", -plot.MidY - 30, 22, textFont, text);
        canvas.Restore();

        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        // Beside the plot, then renamed over it, as LossLog writes the CSV: a failed write leaves the previous plot.
        string partial = path + ".partial";
        try
        {
            using (var file = File.Create(partial)) data.SaveTo(file);
            File.Move(partial, path, overwrite: true);
        }
        finally
        {
            File.Delete(partial);
        }
    }

    private static void DrawLine(SKCanvas canvas, IEnumerable<SKPoint> points, SKColor color, float width)
    {
        using var paint = new SKPaint { Color = color, StrokeWidth = width, IsAntialias = true, Style = SKPaintStyle.Stroke, StrokeJoin = SKStrokeJoin.Round };
        using var path = new SKPath();
        bool first = true;
        foreach (var p in points)
        {
            if (first) path.MoveTo(p); else path.LineTo(p);
            first = false;
        }
        canvas.DrawPath(path, paint);
    }

    // A font that has glyphs even where SkiaSharp's default font manager finds none (NoDependencies build).
    private static SKTypeface LoadTypeface()
    {
        foreach (string candidate in new[] { "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf" })
            if (File.Exists(candidate) && SKTypeface.FromFile(candidate) is { } face) return face;
        return SKTypeface.FromFamilyName("DejaVu Sans") ?? SKTypeface.Default;
    }

    private static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }

    private static double NiceCeiling(double value)
    {
        if (!(value > 0)) return 1;
        double step = NiceStep(value / 5);
        return Math.Ceiling(value / step) * step;
    }

    private static double NiceStep(double raw)
    {
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / magnitude;
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
    }

    private static IEnumerable<double> Ticks(double min, double max, int approximately)
    {
        double step = NiceStep((max - min) / approximately);
        for (double v = Math.Ceiling(min / step) * step; v <= max + step * 1e-9; v += step)
            yield return Math.Round(v / step) * step;
    }
}
