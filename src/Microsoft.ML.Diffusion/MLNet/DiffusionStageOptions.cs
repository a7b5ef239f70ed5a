using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// The columns, seeding, output and batching every sampling stage shares (<see cref="DiffusionGenerationOptions"/>,
/// <see cref="DiffusionImageToImageOptions"/>, <see cref="DiffusionInpaintingOptions"/>). Saved with the stage in model
/// zips (all but <see cref="Device"/>).
/// </summary>
public abstract record DiffusionStageOptions
{
    private protected DiffusionStageOptions(string outputColumnName) => OutputColumnName = outputColumnName;

    /// <summary>Name of the column the stage adds.</summary>
    public string OutputColumnName { get; set; }

    /// <summary>
    /// Column of per-row seeds (any integer type, or Single/Double holding whole numbers); null seeds
    /// row i with <see cref="Seed"/> + i. A row's image depends only on its seed.
    /// </summary>
    public string? SeedColumnName { get; set; }

    /// <summary>
    /// The condition column for a conditional model (class key or integer, float vector, or token keys,
    /// made by the same stages as at training). Null uses the column the model was trained with.
    /// Setting it for an unconditional model is an error.
    /// </summary>
    public string? ConditionColumnName { get; set; }

    /// <summary>Base seed for rows when no seed column is given.</summary>
    public long Seed { get; set; }

    /// <summary>Image or float-vector output.</summary>
    public GeneratedOutputKind OutputKind { get; set; } = GeneratedOutputKind.Image;

    /// <summary>Rows sampled together in one sampler run.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>
    /// Where the stage samples: "cpu", "cuda", "cuda:N" or "auto". Null samples where the model is: where it was
    /// trained, or for a loaded zip where the loading <see cref="MLContext"/> puts it (<see cref="MLContext.GpuDeviceId"/>
    /// and <see cref="MLContext.FallbackToCpu"/>). A machine's choice, so it is not saved in the zip.
    /// </summary>
    [JsonIgnore]
    public string? Device { get; set; }

    /// <summary>The negative prompt text column, for the stages that take one.</summary>
    internal virtual string? NegativePrompts => null;

    /// <summary>Checks the values and throws naming the bad one.</summary>
    public virtual void Validate()
    {
        if (string.IsNullOrWhiteSpace(OutputColumnName)) throw new ArgumentException("OutputColumnName must be set.", nameof(OutputColumnName));
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
    }

    /// <summary>A copy that shares nothing mutable with these options (a stage keeps its own).</summary>
    internal abstract DiffusionStageOptions Snapshot();
}
