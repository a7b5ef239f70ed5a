using System.Globalization;
using SkiaSharp;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Draws the sampler sweep as a PNG: Fréchet distance against network evaluations on a logarithmic axis, a line per
/// sampler, and the band within 10 % of DDPM's full chain.
/// </summary>
internal static class SweepPlot
{
    private static readonly SKColor[] Colors =
        [new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40), new(148, 103, 189), new(140, 86, 75), new(227, 119, 194)];

    public static void Save(SweepReport r, string path, int width = 900, int height = 560)
    {
        var cells = r.Cells.Where(c => double.IsFinite(c.FrechetDistance) && c.Evaluations > 0).ToArray();
        if (cells.Length == 0) return;
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        const float left = 80, right = 190, top = 50, bottom = 60;
        var plot = new SKRect(left, top, width - right, height - bottom);
        using var typeface = SKTypeface.FromFile("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") ?? SKTypeface.Default;
        using var text = new SKPaint { Color = new SKColor(40, 40, 40), IsAntialias = true };
        using var textFont = new SKFont(typeface, 14);
        using var grid = new SKPaint { Color = new SKColor(225, 225, 225), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
        using var axis = new SKPaint { Color = new SKColor(60, 60, 60), StrokeWidth = 1.5f, IsAntialias = true, Style = SKPaintStyle.Stroke };

        double xMin = Math.Log10(cells.Min(c => c.Evaluations) * 0.8), xMax = Math.Log10(cells.Max(c => c.Evaluations) * 1.25);
        // Both axes logarithmic: a sampler's few-step failures (FD in the hundreds) and the near-converged cells stay readable.
        double yMin = Math.Log10(Math.Min(cells.Min(c => c.FrechetDistance), r.FloorFrechetDistance) * 0.8), yMax = Math.Log10(cells.Max(c => c.FrechetDistance) * 1.25);
        float X(double nfe) => plot.Left + (float)((Math.Log10(nfe) - xMin) / (xMax - xMin)) * plot.Width;
        float Y(double fd) => plot.Bottom - (float)((Math.Log10(fd) - yMin) / (yMax - yMin)) * plot.Height;

        foreach (double y in new double[] { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000 }.Where(y => Math.Log10(y) >= yMin && Math.Log10(y) <= yMax))
        {
            canvas.DrawLine(plot.Left, Y(y), plot.Right, Y(y), grid);
            string label = y.ToString("0", CultureInfo.InvariantCulture);
            canvas.DrawText(label, plot.Left - 10 - textFont.MeasureText(label), Y(y) + 5, textFont, text);
        }
        foreach (int x in new[] { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000 }.Where(x => Math.Log10(x) >= xMin && Math.Log10(x) <= xMax))
        {
            canvas.DrawLine(X(x), plot.Top, X(x), plot.Bottom, grid);
            string label = x.ToString(CultureInfo.InvariantCulture);
            canvas.DrawText(label, X(x) - textFont.MeasureText(label) / 2, plot.Bottom + 20, textFont, text);
        }

        var reference = cells.Where(c => c.Sampler == "ddpm").OrderByDescending(c => c.Evaluations).FirstOrDefault();
        if (reference is not null)
        {
            using var band = new SKPaint { Color = new SKColor(120, 200, 120, 60), Style = SKPaintStyle.Fill };
            canvas.DrawRect(new SKRect(plot.Left, Y(1.1 * reference.FrechetDistance), plot.Right, plot.Bottom), band);
            using var dashed = new SKPaint { Color = new SKColor(90, 90, 90), StrokeWidth = 1.5f, IsAntialias = true, Style = SKPaintStyle.Stroke, PathEffect = SKPathEffect.CreateDash([6, 4], 0) };
            canvas.DrawLine(plot.Left, Y(r.FloorFrechetDistance), plot.Right, Y(r.FloorFrechetDistance), dashed);
            canvas.DrawText("real test images (floor)", plot.Right - 175, Y(r.FloorFrechetDistance) + 18, textFont, text);
            canvas.DrawText($"≤ 1.1 × DDPM-{reference.Evaluations}", plot.Left + 8, Y(1.1 * reference.FrechetDistance) - 6, textFont, text);
        }
        canvas.DrawRect(plot, axis);

        var samplers = cells.Select(c => c.Sampler).Distinct().Order(StringComparer.Ordinal).ToArray();
        for (int i = 0; i < samplers.Length; i++)
        {
            var points = cells.Where(c => c.Sampler == samplers[i]).OrderBy(c => c.Evaluations).Select(c => new SKPoint(X(c.Evaluations), Y(c.FrechetDistance))).ToArray();
            using var line = new SKPaint { Color = Colors[i % Colors.Length], StrokeWidth = 2.5f, IsAntialias = true, Style = SKPaintStyle.Stroke };
            using var dot = new SKPaint { Color = Colors[i % Colors.Length], IsAntialias = true, Style = SKPaintStyle.Fill };
            for (int p = 1; p < points.Length; p++) canvas.DrawLine(points[p - 1], points[p], line);
            foreach (var p in points) canvas.DrawCircle(p, 4, dot);
            float ly = plot.Top + 10 + 24 * i;
            canvas.DrawLine(plot.Right + 15, ly, plot.Right + 45, ly, line);
            canvas.DrawText(samplers[i], plot.Right + 52, ly + 5, textFont, text);
        }

        using var title = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var titleFont = new SKFont(typeface, 18) { Embolden = true };
        canvas.DrawText($"Fréchet distance by network evaluations (Fashion-MNIST, {r.Images} images, guidance {r.Guidance:0.#})", left, top - 18, titleFont, title);
        canvas.DrawText("network evaluations (log scale)", plot.MidX - 110, height - 18, textFont, text);
        canvas.Save();
        canvas.RotateDegrees(-90);
        canvas.DrawText("Fréchet distance (log scale)", -plot.MidY - 90, 22, textFont, text);
        canvas.Restore();

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        data.SaveTo(file);
    }
}
