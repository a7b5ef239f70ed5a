using System.Globalization;

namespace Microsoft.ML.Diffusion.Cli.Output;

/// <summary>
/// The loss and learning rate of each training step, as train writes them to &lt;out&gt;.loss.csv and plots them. The
/// CSV is written with every checkpoint, and a resumed run starts from its rows up to the checkpoint's step, so the log
/// covers the whole training however often it was stopped, by Ctrl+C or otherwise.
/// </summary>
internal sealed class LossLog
{
    private const string Header = "step,loss,learning_rate";
    private readonly List<(int Step, double Loss, double LearningRate)> _rows = [];

    /// <summary>The steps logged.</summary>
    public int Count => _rows.Count;

    public void Add(int step, double loss, double learningRate) => _rows.Add((step, loss, learningRate));

    /// <summary>
    /// Takes the rows of steps 1 to <paramref name="lastStep"/> from an earlier run's <paramref name="csv"/> (the steps a
    /// resumed checkpoint holds); later rows, trained again from the checkpoint, are left out. No file, no rows.
    /// </summary>
    public void Continue(string csv, int lastStep)
    {
        if (!File.Exists(csv)) return;
        var earlier = new List<(int, double, double)>();
        foreach (string line in File.ReadLines(csv).Skip(1))
        {
            string[] fields = line.Split(',');
            var inv = CultureInfo.InvariantCulture;
            if (fields.Length == 3 && int.TryParse(fields[0], NumberStyles.Integer, inv, out int step)
                && double.TryParse(fields[1], NumberStyles.Float, inv, out double loss) && double.TryParse(fields[2], NumberStyles.Float, inv, out double rate)
                && step <= lastStep && (earlier.Count == 0 || step > earlier[^1].Item1))
                earlier.Add((step, loss, rate));
        }
        _rows.InsertRange(0, earlier);
    }

    /// <summary>Writes the CSV; a crash while writing leaves the previous file.</summary>
    public void WriteCsv(string csv)
    {
        string partial = csv + ".partial";
        try
        {
            File.WriteAllLines(partial, [Header, .. _rows.Select(l => FormattableString.Invariant($"{l.Step},{l.Loss:R},{l.LearningRate:R}"))]);
            File.Move(partial, csv, overwrite: true);
        }
        finally
        {
            File.Delete(partial);   // nothing to delete after the rename
        }
    }

    /// <summary>Writes the CSV and the loss plot; false when there is nothing to write.</summary>
    public bool Save(string png, string csv)
    {
        if (_rows.Count == 0) return false;
        LossPlot.Save([.. _rows.Select(l => (l.Step, l.Loss))], png, $"Training loss (steps {_rows[0].Step}–{_rows[^1].Step})");
        WriteCsv(csv);
        return true;
    }
}
