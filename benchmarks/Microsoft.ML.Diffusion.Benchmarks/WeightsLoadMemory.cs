using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Benchmarks;

/// <summary>
/// Peak resident memory while loading a multi-GB float32 safetensors file into a module of the same size: the file is
/// written first (one tensor at a time), then the peak is reset, the module built and the weights loaded with the
/// tensor-by-tensor reader (<c>file</c>: SafeTensorsFile + ModuleWeights) or, for comparison and below 2 GiB only,
/// the whole-file reader (<c>bytes</c>: File.ReadAllBytes + SafeTensors.Read). Run each reader in its own process:
/// freed native memory stays with the process and would hide the second reader's peak.
/// </summary>
internal static class WeightsLoadMemory
{
    internal sealed record Result(string Reader, long FileBytes, int Tensors, double BaselineMiB, double ModuleMiB, double PeakMiB,
                                  double PeakOverSize, double Seconds, string Path);

    // Linear layers of 4096×4096 float32 (64 MiB each), like a large model's big matrices.
    private const int Width = 4096;

    private sealed class Stack : nn.Module
    {
        public readonly TorchSharp.Modules.ModuleList<TorchSharp.Modules.Linear> layers;

        public Stack(int count) : base(nameof(Stack))
        {
            layers = new TorchSharp.Modules.ModuleList<TorchSharp.Modules.Linear>([.. Enumerable.Range(0, count).Select(_ => nn.Linear(Width, Width, hasBias: false))]);
            RegisterComponents();
        }
    }

    public static Result Run(double gigabytes, string reader, string directory, bool keepFile, Action<string> log)
    {
        if (reader is not ("file" or "bytes")) throw new ArgumentException($"--weights-reader is file or bytes, not '{reader}'.");
        int count = Math.Max(1, (int)Math.Round(gigabytes * (1L << 30) / (4L * Width * Width)));
        long tensorBytes = 4L * Width * Width, fileBytes = count * tensorBytes;
        if (reader == "bytes" && fileBytes >= int.MaxValue) throw new ArgumentException("The whole-file reader stops at 2 GiB; use --weights-gb 1.5 or less with --weights-reader bytes.");
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"weights-{count}x{Width}x{Width}.safetensors");
        if (!File.Exists(path) || new FileInfo(path).Length < fileBytes)
        {
            log($"writing {path}: {count} float32 tensors of {Width}×{Width}, {fileBytes / (double)(1L << 30):F2} GiB");
            Write(path, count);
        }
        ProcessMemory.CollectGarbage();
        ProcessMemory.TryResetPeak();
        double baseline = ProcessMemory.ResidentMiB();
        var clock = Stopwatch.StartNew();
        using var module = new Stack(count);
        double withModule = ProcessMemory.ResidentMiB();
        if (reader == "file")
        {
            using var file = SafeTensorsFile.Open(path);
            ModuleWeights.Load(module, file);
        }
        else
        {
            var weights = SafeTensors.Read(File.ReadAllBytes(path), path);
            try
            {
                ModuleWeights.Load(module, weights, path);
            }
            finally
            {
                foreach (var t in weights.Values) t.Dispose();
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;
        double peak = ProcessMemory.PeakResidentMiB();
        Check(module, path);
        if (!keepFile) File.Delete(path);
        double sizeMiB = fileBytes / (double)(1 << 20);
        log($"{reader}: baseline {baseline:F0} MiB, with the module {withModule:F0} MiB, peak {peak:F0} MiB; (peak − baseline) / size = {(peak - baseline) / sizeMiB:F3}");
        return new Result(reader, fileBytes, count, baseline, withModule - baseline, peak, (peak - baseline) / sizeMiB, seconds, path);
    }

    // The streamed writer: header first, then each tensor's bytes as it is made, so writing costs one tensor.
    private static void Write(string path, int count)
    {
        long bytes = 4L * Width * Width;
        var header = new JsonObject();
        for (int i = 0; i < count; i++)
            header[$"layers.{i}.weight"] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray(Width, Width), ["data_offsets"] = new JsonArray(i * bytes, (i + 1) * bytes) };
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
        stream.Write(length);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        using var generator = new Generator(17);
        for (int i = 0; i < count; i++)
        {
            using var tensor = randn([Width, Width], generator: generator);
            stream.Write(tensor.bytes);
        }
    }

    // The first and last layers hold what the file holds.
    private static void Check(Stack module, string path)
    {
        using var file = SafeTensorsFile.Open(path);
        foreach (int i in new[] { 0, module.layers.Count - 1 })
        {
            using var expected = file.Read($"layers.{i}.weight");
            if (!module.layers[i].weight!.eq(expected).all().item<bool>()) throw new InvalidOperationException($"layers.{i}.weight did not load.");
        }
    }
}
