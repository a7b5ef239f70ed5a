using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Devices;
using Microsoft.ML.Diffusion.MLNet.Streaming;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.MLNet;

// Fine-tuning a Stable Diffusion StartFrom: images through the frozen autoencoder, captions through the frozen text
// encoder, the UNet trained in place (LatentTrainingSet prepares the data; DiffusionTrainer takes the steps).
public sealed partial class DiffusionTrainingEstimator
{
    // The settings that belong to the library's own pixel-space networks, refused with a Stable Diffusion StartFrom.
    private static readonly DiffusionTrainingOptions PixelDefaults = new();

    private static void CheckLatentOptions(DiffusionTrainingOptions options)
    {
        if (!(options.CaptionDropout >= 0 && options.CaptionDropout <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.CaptionDropout, "CaptionDropout must lie in [0, 1].");
        if (options.UseEma == true && options.EmaDecay == 0)
            throw new ArgumentException("UseEma is true but EmaDecay is 0; set EmaDecay (e.g. 0.9999) to keep an average.", nameof(options));
    }

    // The EMA decay the trainer uses: none when switched off, or by default for a Stable Diffusion UNet.
    private double EmaDecay(bool stableDiffusion) => (_options.UseEma ?? !stableDiffusion) ? _options.EmaDecay : 0;

    private DiffusionTrainingTransformer FitStableDiffusion(IDataView input, DiffusionModel start)
    {
        var o = _options;
        var vae = start.Autoencoder!;
        CheckStableDiffusionOptions(start);
        var column = ImageColumn.Resolve(input.Schema, o.ImageColumnName, vae.Config.InChannels, o.ImageSize, o.PixelRange);
        int factor = vae.Config.DownscaleFactor;
        if (column.Size % 8 != 0 || column.Size % factor != 0)
            throw new ArgumentOutOfRangeException(nameof(input), $"Image column '{column.Name}' holds {column.Size}×{column.Size} images; Stable Diffusion trains on sizes that are multiples of 8 and of its autoencoder's factor ({factor}), such as {Math.Max(1, column.Size / Math.Max(8, factor)) * Math.Max(8, factor)}. Resize them with ResizeImages.");
        var captions = CaptionColumn(input.Schema, start);
        var device = start.Device;
        if (o.Device != "auto" && !SameDevice(DiffusionDevice.Resolve(o.Device), device))
            throw new ArgumentException($"The Stable Diffusion model is on {device} and is trained where it is, but Device is \"{o.Device}\". Load it onto that device (StableDiffusionFormat.Load(path, device)) or leave Device as \"auto\".", nameof(input));

        using var ch = _host.Start("Training");
        int latentSize = column.Size / factor;
        long latentLength = (long)vae.Config.LatentChannels * latentSize * latentSize;
        bool streaming = o.DataLoading switch
        {
            TrainingDataLoading.Streaming => true,
            TrainingDataLoading.InMemory => false,
            _ => !(input.GetRowCount() is { } rows && rows * latentLength * sizeof(float) <= InMemoryBytes),
        };
        ch.Info(streaming
            ? $"Fine-tuning a Stable Diffusion UNet on {column.Size}×{column.Size} images streamed from column '{column.Name}' (encoded by the autoencoder each time they are read) and captions from '{captions.Name}', on {device}."
            : $"Fine-tuning a Stable Diffusion UNet on {column.Size}×{column.Size} images from column '{column.Name}' (encoded once by the autoencoder and kept as latents) and captions from '{captions.Name}', on {device}.");
        if (o.LearningRate > 1e-3)
            ch.Warning($"A learning rate of {o.LearningRate} is far above what Stable Diffusion fine-tuning uses (1e-5 to 1e-4); a pretrained UNet loses what it knew within a few steps.");

        int seed = o.Seed ?? _host.Rand.Next();
        var trainerOptions = o with
        {
            Seed = seed,
            DecaySteps = o.DecaySteps ?? Math.Max(1, o.TrainingSteps),
            Prediction = start.Prediction,
            EmaDecay = EmaDecay(stableDiffusion: true),
        };
        // A LoRA run adapts the UNet through hooks and leaves its weights as the files hold them.
        using var trainer = o.Lora is { } lora
            ? new DiffusionTrainer(start, lora, trainerOptions)
            : new DiffusionTrainer(start.Network, start.ScheduleOptions, trainerOptions, device);
        try
        {
            bool resumed = o.CheckpointPath is not null && o.ResumeFromCheckpoint && File.Exists(o.CheckpointPath);
            if (resumed)
            {
                trainer.LoadState(o.CheckpointPath!);
                ch.Info($"Resumed from checkpoint '{o.CheckpointPath}' at step {trainer.StepsDone}.");
            }
            int remaining = (int)Math.Max(0, o.TrainingSteps - trainer.StepsDone);
            if (o.Lora is null && (resumed || remaining > 0))
            {
                // From the first step on, the UNet is no longer what the model's files hold.
                start.FineTunedFrom ??= start.Source;
                start.Source = null;
            }

            using var data = new LatentTrainingSet(start, device, o.SampleLatents, seed ^ 0x1A7E47, Warner(ch));
            Action<TrainingProgress> report = p =>
            {
                ch.Info($"Step {p.Step}/{p.TotalSteps}: loss {p.Loss:F5}, learning rate {p.LearningRate:E2}, {p.StepsPerSecond:F2} steps/s, {p.ImagesPerSecond:F1} images/s, {p.DataWaitFraction:P1} encoding or waiting for data.");
                o.Progress?.Invoke(p);
            };
            Action<DiffusionTrainer> afterStep = t =>
            {
                _host.CheckAlive();
                if (o.CheckpointPath is not null && t.StepsDone % o.CheckpointEvery == 0)
                    t.SaveState(o.CheckpointPath);
            };
            long skipped = KeepingState(trainer, ch, () => streaming
                ? TrainLatentsStreamed(input, column, captions, trainer, data, remaining, report, afterStep, ch)
                : TrainLatentsInMemory(input, column, captions, trainer, data, remaining, report, afterStep, ch));
            if (skipped > 0) ch.Warning($"{skipped} unreadable training rows were skipped.");
            if (o.CheckpointPath is not null) trainer.SaveState(o.CheckpointPath);
            if (o.Lora is null)
            {
                if (trainer.EmaNetwork is { } average) CopyWeights(average, start.Network);
                start.TrainingSteps = trainer.StepsDone;
            }
            ch.Info(o.Lora is null
                ? $"Training finished at step {trainer.StepsDone}; the model's UNet holds the trained weights."
                : $"Training finished at step {trainer.StepsDone}.");
        }
        finally
        {
            // The model samples again: inference behaviour, and no gradients held (they are as large as the UNet).
            start.Network.zero_grad(true);
            start.Network.eval();
        }
        if (o.Lora is not null) return LoraResult(trainer, column.Name, captions.Name, ch);
        return new DiffusionTrainingTransformer(_host, start, column.Name, captions.Name);
    }

    private static bool SameDevice(Device a, Device b) => a.type == b.type && Math.Max(0, a.index) == Math.Max(0, b.index);

    // Settings of the library's own networks make no sense with a pretrained Stable Diffusion UNet: refused, not ignored.
    private void CheckStableDiffusionOptions(DiffusionModel start)
    {
        var o = _options;
        var given = new List<string>();
        if (o.Network is not null) given.Add("Network");
        if (o.ClassCount is not null) given.Add("ClassCount");
        if (o.MaxTokens != PixelDefaults.MaxTokens) given.Add("MaxTokens");
        if (o.TextWidth != PixelDefaults.TextWidth) given.Add("TextWidth");
        if (o.TextLayers != PixelDefaults.TextLayers) given.Add("TextLayers");
        if (o.TextHeads != PixelDefaults.TextHeads) given.Add("TextHeads");
        if (given.Count > 0)
            throw new ArgumentException($"{string.Join(", ", given)} {(given.Count == 1 ? "configures" : "configure")} the library's own pixel-space networks and conditions, but StartFrom is a Stable Diffusion model, whose UNet reads its own text encoder's states of the captions in ConditionColumnName. Leave {(given.Count == 1 ? "it" : "them")} unset.", nameof(DiffusionTrainingOptions.StartFrom));
        if (o.RandomHorizontalFlip)
            throw new ArgumentException("RandomHorizontalFlip is not available for Stable Diffusion fine-tuning: images are encoded to latents once, and a flipped latent is not the latent of the flipped image. Add mirrored copies of the images to the data instead.", nameof(DiffusionTrainingOptions.RandomHorizontalFlip));
        if (o.ImageChannels != start.Autoencoder!.Config.InChannels)
            throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.ImageChannels), o.ImageChannels, $"The Stable Diffusion model's autoencoder takes {start.Autoencoder.Config.InChannels}-channel images; leave ImageChannels at {start.Autoencoder.Config.InChannels}.");
    }

    private ConditionColumn CaptionColumn(DataViewSchema schema, DiffusionModel start)
    {
        string name = _options.ConditionColumnName
            ?? throw new ArgumentException("A Stable Diffusion model is fine-tuned on captioned images: set ConditionColumnName to the text column that holds each image's caption.", nameof(DiffusionTrainingOptions.ConditionColumnName));
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.ConditionColumnName), $"Caption column '{name}' was not found in the input schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
        if (column.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(nameof(DiffusionTrainingOptions.ConditionColumnName), $"Caption column '{name}' must hold text (a caption per image, read by the model's own tokenizer), but it is {column.Type}. Pass the raw text, without TokenizeIntoWords, MapValueToKey or FeaturizeText.");
        return ConditionColumn.ForModel(schema, name, start.NetworkOptions.Condition);
    }

    private static Action<string> Warner(IChannel ch)
    {
        int warned = 0;
        return message =>
        {
            if (warned++ < 10) ch.Warning(message);
        };
    }

    // Every row read once, in chunks: the pixels of a chunk live only until the autoencoder has encoded them.
    private long TrainLatentsInMemory(IDataView input, ImageColumn column, ConditionColumn captions, DiffusionTrainer trainer, LatentTrainingSet data,
        int steps, Action<TrainingProgress> report, Action<DiffusionTrainer> afterStep, IChannel ch)
    {
        var o = _options;
        if (steps == 0) return 0;
        if (trainer.StreamPosition is not null)
            ch.Warning("The checkpoint was written by streamed training; reading the data into memory starts a new data order.");
        long skipped = 0;
        var pixels = new float[LatentTrainingSet.EncodeChunk * column.Length];
        var texts = new List<string>();
        long firstRow = -1, lastRow = -1;
        void Flush()
        {
            if (texts.Count == 0) return;
            using var scope = NewDisposeScope();
            var images = tensor(pixels.AsSpan(0, texts.Count * column.Length).ToArray(), [texts.Count, column.Channels, column.Size, column.Size]);
            data.Add(images, texts, firstRow == lastRow ? $"row {firstRow}" : $"rows {firstRow}–{lastRow}");
            texts.Clear();
        }
        using (var reader = new TrainingRowReader(input, column, captions))
        {
            while (reader.MoveNext())
            {
                if ((reader.Row & 63) == 0) _host.CheckAlive();
                var error = reader.TryRead(pixels.AsSpan(texts.Count * column.Length, column.Length), out var caption);
                if (error is not null)
                {
                    if (!o.SkipBadRows) throw error;
                    if (skipped++ < 10) ch.Warning($"Skipping: {error.Message}");
                    continue;
                }
                if (texts.Count == 0) firstRow = reader.Row;
                lastRow = reader.Row;
                texts.Add((string)caption!);
                if (texts.Count == LatentTrainingSet.EncodeChunk) Flush();
            }
        }
        Flush();
        if (data.Count == 0)
            throw new InvalidOperationException(skipped > 0
                ? $"None of the {skipped} training rows in image column '{column.Name}' could be read."
                : $"The training data has no rows in image column '{column.Name}'.");
        ch.Info($"Encoded {data.Count} training images to latents {string.Join("×", data.Latents.shape.Skip(1))}{(skipped > 0 ? $" ({skipped} unreadable rows skipped)" : "")}.");

        long count = data.Count;
        int batch = (int)Math.Min(o.BatchSize, count);
        trainer.TrainBatches(() => data.Batch(trainer.NextBatchIndices(count, batch), trainer.Generator, o.CaptionDropout),
            steps, p => report(p with { SkippedRows = skipped }), Math.Max(1, o.ReportEvery), o.CancellationToken, afterStep);
        ch.Info($"{data.CachedPrompts} distinct captions' text-encoder states were kept.");
        return skipped;
    }

    // Batches from the shuffled row stream, each encoded when it is taken (the stream holds pixels, not latents).
    private long TrainLatentsStreamed(IDataView input, ImageColumn column, ConditionColumn captions, DiffusionTrainer trainer, LatentTrainingSet data,
        int steps, Action<TrainingProgress> report, Action<DiffusionTrainer> afterStep, IChannel ch)
    {
        var o = _options;
        if (steps == 0) return trainer.StreamPosition?.SkippedRows ?? 0;
        int bufferRows = o.ShuffleBufferSize ?? (int)Math.Clamp(ShuffleBufferBytes / (column.Length * sizeof(float)), 4L * o.BatchSize, int.MaxValue);
        var start = trainer.StreamPosition ?? StreamPosition.Start(trainer.Options.Seed!.Value ^ 0x5DEECE66DL);
        if (trainer.StepsDone > 0 && trainer.StreamPosition is null)
            ch.Warning("The checkpoint was written by in-memory training; streaming starts a new data order.");
        var stream = new ShuffledRowStream(input, column, captions, o.BatchSize, bufferRows, o.SkipBadRows, start);
        using var prefetch = new BatchPrefetcher(stream, PrefetchBatches);
        var shape = new long[] { o.BatchSize, column.Channels, column.Size, column.Size };
        trainer.TrainBatches(() =>
        {
            var batch = prefetch.Take();
            // The tensor may wrap the array: it goes back to the producer once the autoencoder has read it.
            var images = tensor(batch.Pixels, shape);
            var latents = data.Encode(images, $"a batch of rows before row {batch.Position.RowsIntoPass} of pass {batch.Position.Pass}");
            images.Dispose();
            prefetch.Return(batch.Pixels);
            var prompts = data.Prompts(batch.Conditions!.Select(c => (string)c!).ToList(), trainer.Generator, o.CaptionDropout);
            return new DiffusionTrainer.StepBatch(latents, prompts, batch.Position);
        }, steps, report, Math.Max(1, o.ReportEvery), o.CancellationToken, afterStep);
        return trainer.StreamPosition?.SkippedRows ?? 0;
    }

    private static void CopyWeights(TorchSharp.torch.nn.Module from, TorchSharp.torch.nn.Module to)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();   // releases the wrappers copy_ returns
        var source = from.state_dict();
        foreach (var (name, dst) in to.state_dict()) dst.copy_(source[name]);
    }
}
