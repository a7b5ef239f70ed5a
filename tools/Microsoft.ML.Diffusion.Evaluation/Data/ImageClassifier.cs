using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Diffusion.Evaluation;
using Microsoft.ML.Diffusion.Storage;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.Diffusion.SampleData;

/// <summary>
/// A small convolutional image classifier, used to evaluate generated images (classification accuracy
/// of class-conditional samples, and features for a Fréchet distance). Three 3×3 convolutions
/// (C→32, pool, 32→64, pool, 64→64) with ReLU, then a linear layer to <see cref="ImageClassifierOptions.FeatureDim"/>
/// features and one to the class logits. Inputs are (N, C, H, W) images scaled to [−1, 1].
/// </summary>
public sealed class ImageClassifier : IDisposable
{
    private const string FileMagic = "MLDIFF-CLASSIFIER";
    private const int FormatVersion = 1;

    private readonly ClassifierNetwork _network;
    private readonly Device _device;
    private bool _disposed;

    /// <summary>Creates an untrained classifier, its weights initialised from <see cref="ImageClassifierOptions.Seed"/>.</summary>
    public ImageClassifier(ImageClassifierOptions? options = null, Device? device = null)
    {
        Options = options ?? new ImageClassifierOptions();
        Options.Validate();
        _device = device ?? CPU;
        manual_seed(Options.Seed);
        _network = new ClassifierNetwork(Options);
        _network.to(_device);
    }

    /// <summary>The classifier's shape and training settings.</summary>
    public ImageClassifierOptions Options { get; }

    /// <summary>Optimiser steps taken by <see cref="Train"/> so far (saved with the classifier).</summary>
    public long TrainingSteps { get; private set; }

    /// <summary>
    /// Trains for <paramref name="epochs"/> passes over <paramref name="images"/> (N, C, H, W) in [−1, 1]
    /// with their <paramref name="labels"/>, in shuffled mini-batches of <paramref name="batchSize"/>,
    /// with AdamW and a cross-entropy loss. Returns the mean loss of the last epoch. Each call starts a fresh
    /// optimiser (its moments are not kept between calls), so train in one call where possible.
    /// </summary>
    public double Train(Tensor images, long[] labels, int epochs, int batchSize = 64,
                        Action<ClassifierTrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long n = CheckImages(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (labels.Length != n) throw new ArgumentException($"There are {n} images but {labels.Length} labels.", nameof(labels));
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= Options.ClassCount)
                throw new ArgumentOutOfRangeException(nameof(labels), $"Label {labels[i]} at index {i} is outside 0–{Options.ClassCount - 1}.");
        ArgumentOutOfRangeException.ThrowIfLessThan(epochs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);

        manual_seed(Options.Seed + TrainingSteps);
        var random = new Random(unchecked(Options.Seed * 31 + (int)TrainingSteps));
        using var optimizer = optim.AdamW(_network.parameters(), Options.LearningRate, weight_decay: Options.WeightDecay);
        int stepsPerEpoch = (int)((n + batchSize - 1) / batchSize);
        int totalSteps = stepsPerEpoch * epochs, step = 0;
        var order = new long[n];
        for (long i = 0; i < n; i++) order[i] = i;
        var clock = Stopwatch.StartNew();
        double epochLoss = 0;
        _network.train();
        try
        {
            for (int epoch = 1; epoch <= epochs; epoch++)
            {
                random.Shuffle(order);
                epochLoss = 0;
                for (int start = 0; start < n; start += batchSize)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int size = (int)Math.Min(batchSize, n - start);
                    var batchIndices = order.AsSpan(start, size).ToArray();
                    var batchLabels = new long[size];
                    for (int i = 0; i < size; i++) batchLabels[i] = labels[batchIndices[i]];
                    double loss;
                    using (var scope = NewDisposeScope())
                    {
                        var x = images.index_select(0, tensor(batchIndices, device: images.device)).to(_device);
                        var y = tensor(batchLabels, device: _device);
                        var output = functional.cross_entropy(_network.forward(x), y);
                        optimizer.zero_grad();
                        output.backward();
                        optimizer.step();
                        loss = output.item<float>();
                    }
                    epochLoss += loss * size;
                    step++;
                    TrainingSteps++;
                    progress?.Invoke(new ClassifierTrainingProgress(epoch, step, totalSteps, loss, clock.Elapsed));
                }
                epochLoss /= n;
            }
        }
        finally
        {
            _network.eval();
        }
        return epochLoss;
    }

    /// <summary>The class logits (N, ClassCount) of <paramref name="images"/>, on the CPU.</summary>
    public Tensor Logits(Tensor images, int batchSize = 256) => Batched(images, batchSize, x => _network.forward(x));

    /// <summary>The penultimate layer's activations (N, FeatureDim) of <paramref name="images"/>, on the CPU.</summary>
    public Tensor Features(Tensor images, int batchSize = 256) => Batched(images, batchSize, x => _network.Features(x));

    /// <summary>The most likely class of each image.</summary>
    public long[] Predict(Tensor images, int batchSize = 256)
    {
        using var logits = Logits(images, batchSize);
        using var predicted = logits.argmax(1);
        return predicted.data<long>().ToArray();
    }

    /// <summary>The fraction of <paramref name="images"/> classified as their <paramref name="labels"/>.</summary>
    public double Accuracy(Tensor images, long[] labels, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var predicted = Predict(images, batchSize);
        if (predicted.Length != labels.Length) throw new ArgumentException($"There are {predicted.Length} images but {labels.Length} labels.", nameof(labels));
        if (predicted.Length == 0) return 0;
        int correct = 0;
        for (int i = 0; i < predicted.Length; i++) if (predicted[i] == labels[i]) correct++;
        return (double)correct / predicted.Length;
    }

    /// <summary>
    /// A sample-quality evaluator over <paramref name="realImages"/> that uses this classifier's penultimate
    /// layer as the feature space and its predictions for class accuracy.
    /// </summary>
    public SampleQualityEvaluator CreateQualityEvaluator(Tensor realImages, int neighbours = 3)
        => new(images => Features(images), realImages, images => Predict(images), neighbours);

    private Tensor Batched(Tensor images, int batchSize, Func<Tensor, Tensor> apply)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long n = CheckImages(images);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        _network.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (long start = 0; start < n; start += batchSize)
        {
            long size = Math.Min(batchSize, n - start);
            parts.Add(apply(images.narrow(0, start, size).to(_device)).cpu());
        }
        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    private long CheckImages(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Options.Channels || images.shape[2] != Options.Height || images.shape[3] != Options.Width)
            throw new ArgumentException($"Expected images of shape (N, {Options.Channels}, {Options.Height}, {Options.Width}), got ({string.Join(", ", images.shape)}).", nameof(images));
        if (images.dtype != ScalarType.Float32)
            throw new ArgumentException($"Expected float32 images in [−1, 1], got {images.dtype}.", nameof(images));
        return images.shape[0];
    }

    /// <summary>
    /// Saves the classifier atomically (a crash mid-write keeps the previous file): a JSON header (options,
    /// steps) followed by the weights.
    /// </summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        AtomicFile.Write(path, Save);
    }

    /// <summary>Saves the classifier to a stream.</summary>
    public void Save(Stream stream)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var header = new Header(FileMagic, FormatVersion, Options, TrainingSteps);
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(FileMagic);
        writer.Write(JsonSerializer.Serialize(header));
        _network.save(writer);
    }

    /// <summary>Loads a classifier written by <see cref="Save(string)"/>.</summary>
    public static ImageClassifier Load(string path, Device? device = null)
    {
        using var stream = File.OpenRead(path);
        return Load(stream, path, device);
    }

    /// <summary>Loads a classifier from a stream; <paramref name="name"/> names it in error messages.</summary>
    public static ImageClassifier Load(Stream stream, string name = "stream", Device? device = null)
    {
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        Header header;
        try
        {
            if (reader.ReadString() != FileMagic) throw new InvalidDataException("wrong magic");
            header = JsonSerializer.Deserialize<Header>(reader.ReadString()) ?? throw new InvalidDataException("empty header");
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException or JsonException or IOException)
        {
            throw new InvalidDataException($"'{name}' is not a Microsoft.ML.Diffusion image classifier ({e.Message}).", e);
        }
        if (header.Version > FormatVersion)
            throw new InvalidDataException($"'{name}' was written by a newer version of the library (classifier format {header.Version}; this one reads up to {FormatVersion}).");
        var classifier = new ImageClassifier(header.Options, device);
        try
        {
            classifier._network.load(reader, strict: true);
        }
        catch (Exception e)
        {
            classifier.Dispose();
            throw new InvalidDataException($"The weights in '{name}' cannot be read: {e.Message}", e);
        }
        classifier._network.to(classifier._device);
        classifier.TrainingSteps = header.TrainingSteps;
        return classifier;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _network.Dispose();
    }

    private sealed record Header(string Magic, int Version, ImageClassifierOptions Options, long TrainingSteps);

    private sealed class ClassifierNetwork : Module<Tensor, Tensor>
    {
        // Every 3×3 conv has ≥ 16 output channels: libtorch 2.10's CPU 3×3 conv backward is wrong with ≤ 8.
        private readonly Conv2d conv1;
        private readonly Conv2d conv2;
        private readonly Conv2d conv3;
        private readonly Linear hidden;
        private readonly Dropout dropout;
        private readonly Linear output;

        public ClassifierNetwork(ImageClassifierOptions options) : base(nameof(ImageClassifier))
        {
            // TorchSharp's layer constructors leave undisposed the tensors their in-place initialisers return (each holds a
            // reference to a weight); the scope releases them, and conv and linear parameters stay registered.
            using var construction = NewDisposeScope();
            conv1 = Conv2d(options.Channels, 32, 3, padding: 1);
            conv2 = Conv2d(32, 64, 3, padding: 1);
            conv3 = Conv2d(64, 64, 3, padding: 1);
            hidden = Linear(64L * (options.Height / 4) * (options.Width / 4), options.FeatureDim);
            dropout = Dropout(options.Dropout);
            output = Linear(options.FeatureDim, options.ClassCount);
            RegisterComponents();
        }

        public Tensor Features(Tensor x)
        {
            using var scope = NewDisposeScope();
            var h = functional.max_pool2d(functional.relu(conv1.forward(x)), 2);
            h = functional.max_pool2d(functional.relu(conv2.forward(h)), 2);
            h = functional.relu(conv3.forward(h));
            return functional.relu(hidden.forward(h.flatten(1))).MoveToOuterDisposeScope();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return output.forward(dropout.forward(Features(x))).MoveToOuterDisposeScope();
        }
    }
}
