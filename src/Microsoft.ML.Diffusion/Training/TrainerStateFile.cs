using Microsoft.ML.Diffusion.Adapters;
using Microsoft.ML.Diffusion.Models;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML.Diffusion.Checkpoints;
using Microsoft.ML.Diffusion.Storage;
using Microsoft.ML.Diffusion.Networks;
using Microsoft.ML.Diffusion.Networks.Legacy;
using Microsoft.ML.Diffusion.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Training;

/// <summary>
/// The resumable training-state file: a zip (each entry CRC-checked) holding a JSON header with the
/// configuration and counters, and the network, EMA, optimiser, generator and epoch-order bytes. A LoRA run saves its
/// adapters (and their EMA) in place of the network: the frozen network it adapts is not copied.
/// </summary>
internal static class TrainerStateFile
{
    public const int FormatVersion = 4;   // 3 adds the streamed data position, 4 LoRA runs (written only by them)

    private const int LastFullNetworkVersion = 3;

    private sealed record Header
    {
        public int FormatVersion { get; init; }
        public required NoisePredictorOptions Network { get; init; }
        public required NoiseScheduleOptions Schedule { get; init; }
        public required DiffusionTrainerOptions Options { get; init; }
        public long StepsDone { get; init; }
        public long EpochPosition { get; init; }
        public bool HasEpochOrder { get; init; }
        public StreamPosition? Stream { get; init; }
        public LoraTrainingOptions? Lora { get; init; }
    }

    public static void Write(string path, DiffusionTrainer trainer)
    {
        AtomicFile.Write(path, stream =>
        {
            using (var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
            {
                var (order, position) = trainer.EpochState;
                var header = new Header
                {
                    // Runs without LoRA stay readable by versions that know nothing of it.
                    FormatVersion = trainer.Lora is null ? LastFullNetworkVersion : FormatVersion,
                    Network = trainer.Network.Options,
                    Schedule = trainer.ScheduleOptions,
                    Options = trainer.Options,
                    StepsDone = trainer.StepsDone,
                    EpochPosition = position,
                    HasEpochOrder = order is not null,
                    Stream = trainer.StreamPosition,
                    Lora = trainer.Lora,
                };
                Entry(zip, "trainer.json", s => JsonSerializer.Serialize(s, header, DiffusionCheckpoint.JsonOptions));
                Entry(zip, "network.bin", s => { using var w = new BinaryWriter(s); trainer.TrainedModule.save(w); });
                if (trainer.EmaModule is { } ema)
                    Entry(zip, "ema.bin", s => { using var w = new BinaryWriter(s); ema.save(w); });
                Entry(zip, "optimizer.bin", s => { using var w = new BinaryWriter(s); trainer.Optimizer.save_state_dict(w); });
                Entry(zip, "generator.bin", s => { using var state = trainer.Generator.get_state(); s.Write(state.data<byte>().ToArray()); });
                if (order is not null)
                    Entry(zip, "order.bin", s => { var values = order.data<long>().ToArray(); s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())); });
            }
        });
    }

    public static void Read(string path, DiffusionTrainer trainer)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Training state file '{path}' does not exist.", path);
        string source = $"Training state file '{path}'";
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var header = JsonSerializer.Deserialize<Header>(ReadEntry(zip, "trainer.json", source), DiffusionCheckpoint.JsonOptions)
                ?? throw new CheckpointFormatException($"{source} has an empty header.");
            if (header.FormatVersion > FormatVersion)
                throw new CheckpointFormatException($"{source} has format version {header.FormatVersion}, written by a newer Microsoft.ML.Diffusion; this version reads up to {FormatVersion}.");
            var network = header.Network;
            var first = network as UNetOptions;
            if (first is not null)
            {
                // A state of the library's first UNet resumes in the UNet2DModel that computes the same, where one does.
                network = FirstUNetFiles.Converted(first) ?? throw new CheckpointFormatException(
                    $"{source} was written while training the library's first UNet, which no longer trains: {FirstUNetFiles.WhyNoDiffusersForm(first)}. The models saved from that run still load and generate; train a new model (the default network) to go on.");
                if (header.Lora is not null)
                    throw new CheckpointFormatException($"{source} holds LoRA adapters for the layers of the library's first UNet, whose models now load as diffusers' UNet2DModel under other layer names; fuse the adapters already saved with LoadLora, or train new ones on the loaded model.");
            }
            Same(network, trainer.Network.Options, "network", source);
            Same(header.Schedule, trainer.ScheduleOptions, "noise schedule", source);
            Same(header.Options with { Seed = 0 }, trainer.Options with { Seed = 0 }, "training options", source);
            Same(header.Lora, trainer.Lora, "LoRA settings", source);

            if (first is not null)
            {
                // The first UNet's weights are renamed to UNet2DModel's (the fused qkv split in three): AdamW's moments, kept
                // per parameter in the old order, start afresh, so training continues, not bit for bit.
                LoadFirstUNet(trainer.Network, ReadEntry(zip, "network.bin", source), first, header.FormatVersion, source);
                if (trainer.EmaNetwork is not null) LoadFirstUNet(trainer.EmaNetwork, ReadEntry(zip, "ema.bin", source), first, header.FormatVersion, source);
            }
            else if (header.FormatVersion >= 2)
            {
                using (var r = new BinaryReader(new MemoryStream(ReadEntry(zip, "network.bin", source)))) trainer.TrainedModule.load(r, strict: true);
                if (trainer.EmaModule is { } ema)
                    using (var r = new BinaryReader(new MemoryStream(ReadEntry(zip, "ema.bin", source)))) ema.load(r, strict: true);
                using (var r = new BinaryReader(new MemoryStream(ReadEntry(zip, "optimizer.bin", source)))) trainer.Optimizer.load_state_dict(r);
            }
            else
            {
                // Format 1 stored the output convolution padded to 16 channels: its weights are brought to today's shapes, and
                // AdamW's moments, whose shapes no longer fit, start afresh (training continues, not bit for bit).
                LoadLegacy(trainer.Network, ReadEntry(zip, "network.bin", source), trainer.Network.Options, source);
                if (trainer.EmaNetwork is not null) LoadLegacy(trainer.EmaNetwork, ReadEntry(zip, "ema.bin", source), trainer.Network.Options, source);
            }
            byte[] generatorState = ReadEntry(zip, "generator.bin", source);
            using (var state = tensor(generatorState, dtype: ScalarType.Byte)) trainer.Generator.set_state(state);
            Tensor? order = null;
            if (header.HasEpochOrder)
            {
                var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(ReadEntry(zip, "order.bin", source)).ToArray();
                order = tensor(values, dtype: int64).DetachFromDisposeScope();
            }
            trainer.RestoreCounters(header.StepsDone, order, header.EpochPosition, header.Stream);
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or EndOfStreamException)
        {
            throw new CheckpointFormatException($"{source} is corrupt or truncated: {e.Message}", e);
        }
    }

    private static void LoadFirstUNet(NoisePredictor network, byte[] weights, UNetOptions first, int formatVersion, string source)
    {
        var state = formatVersion >= 2 ? TorchSharpWeights.Read(weights, source) : LegacyWeights.Read(weights, first, source);
        try
        {
            FirstUNetFiles.LoadRenamed(network, first, state, source);
        }
        finally
        {
            foreach (var t in state.Values) t.Dispose();
        }
    }

    private static void LoadLegacy(NoisePredictor network, byte[] weights, NoisePredictorOptions options, string source)
    {
        var state = LegacyWeights.Read(weights, options, source);
        try
        {
            ModuleWeights.Load(network, state, source);
        }
        finally
        {
            foreach (var t in state.Values) t.Dispose();
        }
    }

    private static void Same<T>(T saved, T current, string what, string source)
    {
        string a = JsonSerializer.Serialize(saved, DiffusionCheckpoint.JsonOptions), b = JsonSerializer.Serialize(current, DiffusionCheckpoint.JsonOptions);
        if (a != b)
            throw new CheckpointFormatException($"{source} was written with a different {what} ({a}) than this trainer has ({b}); create the trainer with the saved settings to resume.");
    }

    private static void Entry(ZipArchive zip, string name, Action<Stream> write)
    {
        using var stream = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
        write(stream);
    }

    private static byte[] ReadEntry(ZipArchive zip, string name, string source)
    {
        var entry = zip.GetEntry(name) ?? throw new CheckpointFormatException($"{source} lacks its '{name}' entry; it is not a complete training state.");
        using var stream = entry.Open();
        using var ms = new MemoryStream();
        stream.CopyTo(ms);   // the zip reader verifies the entry's CRC-32 as it reads
        return ms.ToArray();
    }
}
