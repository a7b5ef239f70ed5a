using Microsoft.ML.Diffusion.MLNet;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;
using Microsoft.ML.Runtime;
using Microsoft.ML.Diffusion.Pipelines;

namespace Microsoft.ML;

/// <summary>Diffusion-model stages for ML.NET pipelines, as extension methods on <c>mlContext.Transforms</c>.</summary>
public static class DiffusionCatalog
{
    /// <summary>
    /// Trains a diffusion model (DDPM's Algorithm 1) on an image column: images from
    /// <c>LoadImages</c> + <c>ResizeImages</c>, or float pixels from <c>ExtractPixels</c>.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="imageColumnName">The image column.</param>
    /// <param name="imageChannels">1 (grey), 3 (RGB) or 4 (RGBA).</param>
    /// <param name="trainingSteps">Optimiser steps.</param>
    /// <param name="batchSize">Images per step.</param>
    /// <example><code>
    /// var pipeline = ml.Transforms.LoadImages("Image", folder, "Path")
    ///     .Append(ml.Transforms.ResizeImages("Image", 32, 32))
    ///     .Append(ml.Transforms.TrainDiffusion("Image", imageChannels: 3, trainingSteps: 5000));
    /// var model = pipeline.Fit(data);
    /// </code></example>
    public static DiffusionTrainingEstimator TrainDiffusion(this TransformsCatalog catalog, string imageColumnName = "Image",
        int imageChannels = 3, int trainingSteps = 2000, int batchSize = 64)
        => TrainDiffusion(catalog, new DiffusionTrainingOptions
        {
            ImageColumnName = imageColumnName, ImageChannels = imageChannels, TrainingSteps = trainingSteps, BatchSize = batchSize,
        });

    /// <summary>Trains a diffusion model with every setting available.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The training settings.</param>
    public static DiffusionTrainingEstimator TrainDiffusion(this TransformsCatalog catalog, DiffusionTrainingOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), options);

    /// <summary>
    /// Generates one image per input row from a trained diffusion model. Rows are generated in batches
    /// (one sampler run per batch); each row's image depends only on its seed.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="outputColumnName">The image column to add.</param>
    /// <param name="seedColumnName">A column of per-row integer seeds; null seeds row i with i.</param>
    /// <param name="sampler">A sampler name (<see cref="SamplerName"/>.Ddim or a registered name) such as "heun"; default DPM-Solver++.</param>
    /// <param name="steps">Denoising steps; null uses the sampler's usual count.</param>
    /// <param name="guidanceScale">Classifier-free guidance for conditional models (1 = as trained).</param>
    /// <example><code>
    /// var generate = ml.Transforms.DiffusionGenerate(model, "Generated", seedColumnName: "Seed", sampler: SamplerName.Ddim, steps: 50);
    /// var images = generate.Fit(seeds).Transform(seeds);
    /// </code></example>
    public static DiffusionGenerationEstimator DiffusionGenerate(this TransformsCatalog catalog, ITransformer model,
        string outputColumnName = "GeneratedImage", string? seedColumnName = null,
        SamplerName sampler = default, int? steps = null, double guidanceScale = 1.0)
        => DiffusionGenerate(catalog, model, new DiffusionGenerationOptions
        {
            OutputColumnName = outputColumnName, SeedColumnName = seedColumnName,
            Generation = { Sampler = sampler, Steps = steps, GuidanceScale = guidanceScale },
        });

    /// <summary>Generates images with every setting available.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="options">The generation settings.</param>
    public static DiffusionGenerationEstimator DiffusionGenerate(this TransformsCatalog catalog, ITransformer model, DiffusionGenerationOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), DiffusionTrainingTransformer.FindModel(model), WithTrainedCondition(options, model));

    // A conditional model reads the column it was trained with unless told otherwise (on a copy: the caller's options stay as given).
    private static T WithTrainedCondition<T>(T options, ITransformer model) where T : DiffusionStageOptions
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ConditionColumnName is null && DiffusionTrainingTransformer.TryFindStage(model) is DiffusionTrainingTransformer trained)
            return (T)(options.Snapshot() with { ConditionColumnName = trained.ConditionColumnName });
        return options;
    }

    /// <summary>Generates images from a <see cref="DiffusionModel"/> trained or loaded outside ML.NET.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">The model.</param>
    /// <param name="options">The generation settings.</param>
    public static DiffusionGenerationEstimator DiffusionGenerate(this TransformsCatalog catalog, DiffusionModel model, DiffusionGenerationOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), model, options);

    /// <summary>
    /// Image-to-image (SDEdit): redraws each row's image to <paramref name="strength"/> — noised by the forward process that
    /// far along the sampler's steps and sampled back — so the output keeps the input's layout and colours more the lower
    /// the strength. 0 returns the image, 1 generates from pure noise. Each row's noise comes from its seed.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="outputColumnName">The image column to add.</param>
    /// <param name="imageColumnName">The input images, of the model's size (an image column or ExtractPixels' float vector).</param>
    /// <param name="strength">How much to redraw, in [0, 1].</param>
    /// <param name="seedColumnName">A column of per-row integer seeds; null seeds row i with i.</param>
    /// <param name="sampler">A sampler name (<see cref="SamplerName"/>.Ddim or a registered name); default DPM-Solver++.</param>
    /// <param name="steps">Denoising steps of the whole trajectory (⌊steps × strength⌋ of them run); null uses the sampler's usual count.</param>
    /// <param name="guidanceScale">Classifier-free guidance for conditional models (1 = as trained).</param>
    /// <example><code>
    /// var edit = ml.Transforms.DiffusionImageToImage(model, "Edited", "Image", strength: 0.5, seedColumnName: "Seed");
    /// var edited = edit.Fit(photos).Transform(photos);
    /// </code></example>
    public static DiffusionImageToImageEstimator DiffusionImageToImage(this TransformsCatalog catalog, ITransformer model,
        string outputColumnName = "EditedImage", string imageColumnName = "Image", double strength = 0.6, string? seedColumnName = null,
        SamplerName sampler = default, int? steps = null, double guidanceScale = 1.0)
        => DiffusionImageToImage(catalog, model, new DiffusionImageToImageOptions
        {
            OutputColumnName = outputColumnName, ImageColumnName = imageColumnName, Strength = strength, SeedColumnName = seedColumnName,
            Generation = { Sampler = sampler, Steps = steps, GuidanceScale = guidanceScale },
        });

    /// <summary>Image-to-image with every setting available.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="options">The columns, strength and sampling settings.</param>
    public static DiffusionImageToImageEstimator DiffusionImageToImage(this TransformsCatalog catalog, ITransformer model, DiffusionImageToImageOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), DiffusionTrainingTransformer.FindModel(model), WithTrainedCondition(options, model));

    /// <summary>
    /// Inpainting (RePaint): redraws each row's image where its mask is 1 so that the new part fits the rest, and keeps it
    /// exactly where the mask is 0. A row whose mask is all zeros is returned as it is.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="outputColumnName">The image column to add.</param>
    /// <param name="imageColumnName">The input images, of the model's size (an image column or ExtractPixels' float vector).</param>
    /// <param name="maskColumnName">The masks: an image (white = redraw) or a float vector of H×W or C×H×W values in [0, 1].</param>
    /// <param name="seedColumnName">A column of per-row integer seeds; null seeds row i with i.</param>
    /// <example><code>
    /// var fill = ml.Transforms.DiffusionInpaint(model, "Filled", "Image", "Mask");
    /// var filled = fill.Fit(damaged).Transform(damaged);
    /// </code></example>
    public static DiffusionInpaintingEstimator DiffusionInpaint(this TransformsCatalog catalog, ITransformer model,
        string outputColumnName = "InpaintedImage", string imageColumnName = "Image", string maskColumnName = "Mask", string? seedColumnName = null)
        => DiffusionInpaint(catalog, model, new DiffusionInpaintingOptions
        {
            OutputColumnName = outputColumnName, ImageColumnName = imageColumnName, MaskColumnName = maskColumnName, SeedColumnName = seedColumnName,
        });

    /// <summary>Inpainting with every setting available (RePaint's steps, jumps and resamplings among them).</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">A fitted pipeline containing a trained diffusion model (or a loaded model zip of one).</param>
    /// <param name="options">The columns and RePaint settings.</param>
    public static DiffusionInpaintingEstimator DiffusionInpaint(this TransformsCatalog catalog, ITransformer model, DiffusionInpaintingOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), DiffusionTrainingTransformer.FindModel(model), WithTrainedCondition(options, model));

    /// <summary>Image-to-image with a <see cref="DiffusionModel"/> trained or loaded outside ML.NET.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">The model.</param>
    /// <param name="options">The columns, strength and sampling settings (a conditional model needs the condition column).</param>
    public static DiffusionImageToImageEstimator DiffusionImageToImage(this TransformsCatalog catalog, DiffusionModel model, DiffusionImageToImageOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), model, options);

    /// <summary>Inpainting with a <see cref="DiffusionModel"/> trained or loaded outside ML.NET.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="model">The model.</param>
    /// <param name="options">The columns and RePaint settings (a conditional model needs the condition column).</param>
    public static DiffusionInpaintingEstimator DiffusionInpaint(this TransformsCatalog catalog, DiffusionModel model, DiffusionInpaintingOptions options)
        => new(CatalogUtils.GetEnvironment(catalog), model, options);
}
