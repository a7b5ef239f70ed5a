using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// Options for <see cref="DiffusionCatalog.DiffusionGenerate(TransformsCatalog, ITransformer, DiffusionGenerationOptions)"/>:
/// every sampling setting of <see cref="GenerationOptions"/> plus the stage's columns, output and batching. Saved with
/// the stage in model zips (all but <see cref="Device"/>).
/// </summary>
// Saved in zips with the kind of stage, so a loaded zip edits as it was built to.
[JsonPolymorphic(TypeDiscriminatorPropertyName = "Stage")]
[JsonDerivedType(typeof(DiffusionGenerationOptions), "generate")]
[JsonDerivedType(typeof(DiffusionImageToImageOptions), "image-to-image")]
[JsonDerivedType(typeof(DiffusionInpaintingOptions), "inpaint")]
public record DiffusionGenerationOptions : GenerationOptions
{
    /// <summary>Name of the generated column.</summary>
    public string OutputColumnName { get; set; } = "GeneratedImage";

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

    /// <summary>Rows generated together in one sampler run.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>
    /// Where the stage generates: "cpu", "cuda", "cuda:N" or "auto". Null generates where the model is: where it was
    /// trained, or for a loaded zip where the loading <see cref="MLContext"/> puts it (<see cref="MLContext.GpuDeviceId"/>
    /// and <see cref="MLContext.FallbackToCpu"/>). A machine's choice, so it is not saved in the zip.
    /// </summary>
    [JsonIgnore]
    public string? Device { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        if (string.IsNullOrWhiteSpace(OutputColumnName)) throw new ArgumentException("OutputColumnName must be set.", nameof(OutputColumnName));
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
        base.Validate();
    }
}
