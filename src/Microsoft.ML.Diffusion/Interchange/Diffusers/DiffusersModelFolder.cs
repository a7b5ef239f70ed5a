namespace Microsoft.ML.Diffusion.Interchange.Diffusers;

/// <summary>
/// A diffusers model folder as a whole: the UNet's <c>config.json</c> and weights at the top (the older flat layout) or
/// in <c>unet/</c>, and <c>scheduler_config.json</c> at the top or in <c>scheduler/</c>. What it lacks is named at once,
/// so that an empty or wrong folder is not fixed one file at a time.
/// </summary>
internal static class DiffusersModelFolder
{
    /// <summary>The folder that holds the UNet: <c>unet/</c> when there is one, else the folder itself.</summary>
    public static string UNetFolder(string folder)
    {
        string unet = Path.Combine(folder, "unet");
        return Directory.Exists(unet) ? unet : folder;
    }

    /// <summary>
    /// The files a model is read from (the UNet's configuration and weights, a condition encoder's, the scheduler's
    /// configuration, model_index.json), in name order, for the checksum a model zip identifies the folder's model by.
    /// </summary>
    public static IEnumerable<string> WeightFiles(string folder)
    {
        string unet = UNetFolder(folder);
        string encoder = Path.Combine(folder, ConditionEncoderFolder.Folder);
        string[] candidates =
        [
            Path.Combine(unet, DiffusersUNetFolder.ConfigFile), Path.Combine(unet, DiffusersUNetFolder.SafeTensorsFile), Path.Combine(unet, DiffusersUNetFolder.PickleFile),
            Path.Combine(encoder, ConditionEncoderFolder.ConfigFile), Path.Combine(encoder, ConditionEncoderFolder.WeightsFile),
            Path.Combine(folder, "scheduler", DiffusersSchedulerConfig.FileName), Path.Combine(folder, DiffusersSchedulerConfig.FileName),
            Path.Combine(folder, "model_index.json"),
        ];
        return candidates.Distinct().Where(File.Exists).Order(StringComparer.Ordinal);
    }

    /// <summary>
    /// Throws a <see cref="FileNotFoundException"/> naming every file the folder lacks. A folder that does not exist is
    /// left to the readers, which say so.
    /// </summary>
    public static void ThrowIfIncomplete(string folder)
    {
        if (!Directory.Exists(folder)) return;
        var lacking = new List<(string Path, string Description)>();
        const string scheduler = DiffusersSchedulerConfig.FileName;
        if (!File.Exists(Path.Combine(folder, scheduler)) && !File.Exists(Path.Combine(folder, "scheduler", scheduler)))
            lacking.Add((Path.Combine(folder, scheduler), $"{scheduler} (nor scheduler/{scheduler})"));

        string unet = UNetFolder(folder);
        bool flat = unet == folder;
        const string config = DiffusersUNetFolder.ConfigFile, safeTensors = DiffusersUNetFolder.SafeTensorsFile, pickle = DiffusersUNetFolder.PickleFile;
        if (!File.Exists(Path.Combine(unet, config)))
            lacking.Add((Path.Combine(unet, config), flat ? $"{config} (nor unet/{config})" : $"unet/{config}"));
        if (!File.Exists(Path.Combine(unet, safeTensors)) && !File.Exists(Path.Combine(unet, pickle)))
            lacking.Add((Path.Combine(unet, safeTensors), flat ? $"{safeTensors} or {pickle} (nor the same in unet/)" : $"unet/{safeTensors} or unet/{pickle}"));

        if (lacking.Count == 0) return;
        string list = lacking.Count == 1 ? lacking[0].Description
            : string.Join(", no ", lacking.Take(lacking.Count - 1).Select(l => l.Description)) + " and no " + lacking[^1].Description;
        throw new FileNotFoundException(
            $"'{folder}' has no {list}; a diffusers model folder needs the scheduler's configuration (the noise schedule the model was trained with) and the UNet's configuration and weights.",
            lacking[0].Path);
    }
}
