using Microsoft.ML.Diffusion.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>
/// A LoRA file read into memory: its layout (detected from the tensor names; one file holds one layout) and its layers,
/// each with its own rank and optional alpha, factors in float32 on the CPU. Which model modules the layers update is
/// decided when the adapter is applied (<see cref="LoraTargets"/>). The adapter owns its tensors.
/// </summary>
internal sealed class LoraAdapter : IDisposable
{
    private LoraAdapter(string source, LoraLayout layout, IReadOnlyList<LoraLayer> layers)
    {
        Source = source;
        Layout = layout;
        Layers = layers;
    }

    /// <summary>Names the file in messages (its path in quotes).</summary>
    public string Source { get; }

    public LoraLayout Layout { get; }

    public IReadOnlyList<LoraLayer> Layers { get; }

    /// <summary>An adapter of layers made in memory (by training); it takes ownership of them.</summary>
    public static LoraAdapter FromLayers(string source, IReadOnlyList<LoraLayer> layers) => new(source, LoraLayout.Diffusers, layers);

    // By content, not name: a file saved without the .safetensors extension still reads. SafeTensors opens with an 8-byte
    // header length and the header's '{'; torch.save writes a zip ("PK") or a pickle (0x80).
    private static bool IsSafeTensors(string path)
    {
        Span<byte> head = stackalloc byte[9];
        using var stream = File.OpenRead(path);
        return stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length
            ? head[8] == (byte)'{'
            : path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);   // too short for either: let the named reader say so
    }

    /// <summary>Reads a .safetensors LoRA file (or a PyTorch pickle through the restricted unpickler).</summary>
    /// <exception cref="CheckpointFormatException">The file is not a LoRA of a known layout, or its tensors are inconsistent or not finite.</exception>
    public static LoraAdapter Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"LoRA file '{path}' does not exist.", path);
        using ITensorFile file = IsSafeTensors(path) ? SafeTensorsFile.Open(path) : TorchCheckpointFile.Open(path);
        string config = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, PeftConfig.FileName);
        return Read(file, File.Exists(config) ? config : null);
    }

    /// <summary>Reads a LoRA from the bytes of a safetensors file; <paramref name="source"/> names it in messages.</summary>
    /// <exception cref="CheckpointFormatException">The bytes are not a safetensors file, or not a LoRA of a known layout, or inconsistent or not finite.</exception>
    public static LoraAdapter Read(byte[] safeTensors, string source)
    {
        ArgumentNullException.ThrowIfNull(safeTensors);
        using var file = new InMemoryTensorFile(SafeTensors.Read(safeTensors, source), source);
        return Read(file);
    }

    /// <summary>An adapter of this one's file and layout with other layers (it takes ownership of them).</summary>
    public LoraAdapter WithLayers(IReadOnlyList<LoraLayer> layers) => new(Source, Layout, layers);

    /// <summary>An adapter with copies of this one's factors, owned by the caller.</summary>
    public LoraAdapter Clone() => new(Source, Layout,
        Layers.Select(l => new LoraLayer(l.Component, l.Module, l.Source, l.Down.clone().DetachFromDisposeScope(), l.Up.clone().DetachFromDisposeScope(), l.Alpha)).ToList());

    /// <summary>
    /// Reads the LoRA layers of <paramref name="file"/>; a PEFT file's alpha comes from <paramref name="peftConfig"/>
    /// (PEFT's adapter_config.json beside it) when one is given.
    /// </summary>
    public static LoraAdapter Read(ITensorFile file, string? peftConfig = null)
    {
        ArgumentNullException.ThrowIfNull(file);
        var keys = new Dictionary<string, LoraKey>(StringComparer.Ordinal);
        var unknown = new List<string>();
        foreach (string name in file.Names)
        {
            if (LoraKey.Parse(name) is { } key) keys[name] = key;
            else unknown.Add(name);
        }
        if (file.Names.Count == 0) throw new CheckpointFormatException($"{file.Source} holds no tensors, so no LoRA layers.");
        if (unknown.Count > 0)
        {
            string what = keys.Count == 0 ? "is not a LoRA file of a layout this library reads" : "has tensors that are in none of the LoRA layouts this library reads";
            string sdxl = unknown.Any(n => n.StartsWith("lora_te1_", StringComparison.Ordinal) || n.StartsWith("lora_te2_", StringComparison.Ordinal))
                ? " (lora_te1_/lora_te2_ are SDXL's two text encoders; SDXL is not supported)" : "";
            throw new CheckpointFormatException(
                $"{file.Source} {what}{sdxl}: {List(unknown)}. Known layouts: diffusers ('…attn1.processor.to_q_lora.down.weight', '…to_q.lora.down.weight', " +
                "'text_encoder.…q_proj.lora_linear_layer.down.weight'), PEFT ('…to_q.lora_A.weight' / 'lora_B.weight') and Kohya " +
                "('lora_unet_…_to_q.lora_down.weight' / 'lora_up.weight' / 'alpha', 'lora_te_…').");
        }
        var layouts = keys.Values.Select(k => k.Layout).Distinct().ToList();
        if (layouts.Count > 1)
        {
            var examples = layouts.Select(l => $"{l} ('{keys.First(kv => kv.Value.Layout == l).Key}')");
            throw new CheckpointFormatException($"{file.Source} mixes LoRA layouts: {string.Join(", ", examples)}; a file holds one layout.");
        }

        double? alpha = layouts[0] == LoraLayout.Peft && peftConfig is not null ? PeftConfig.Alpha(peftConfig) : null;

        // Group the tensors by layer (network, module) and check each group is a whole, consistent low-rank pair.
        var groups = keys.GroupBy(kv => (kv.Value.Component, kv.Value.Module)).ToList();
        var layers = new List<LoraLayer>(groups.Count);
        try
        {
            foreach (var group in groups)
                layers.Add(ReadLayer(file, group.ToDictionary(kv => kv.Value.Role, kv => kv.Key), alpha));
        }
        catch
        {
            foreach (var layer in layers) layer.Dispose();
            throw;
        }
        return new LoraAdapter(file.Source, layouts[0], layers);
    }

    private static LoraLayer ReadLayer(ITensorFile file, Dictionary<LoraRole, string> names, double? defaultAlpha)
    {
        string any = names.Values.First();
        var key = LoraKey.Parse(any)!.Value;
        if (!names.TryGetValue(LoraRole.Down, out string? downName) || !names.TryGetValue(LoraRole.Up, out string? upName))
        {
            string missing = names.ContainsKey(LoraRole.Down) ? "up" : "down";
            throw new CheckpointFormatException($"{file.Source} has an incomplete LoRA layer: '{any}' has no {missing} weight beside it.");
        }
        long[] down = file.Shape(downName), up = file.Shape(upName);
        if (down.Length is not (2 or 4) || up.Length != down.Length || (up.Length == 4 && (up[2] != 1 || up[3] != 1)))
            throw new CheckpointFormatException($"{file.Source} has LoRA factors of unusable shapes: '{downName}' is [{string.Join(", ", down)}] and '{upName}' is [{string.Join(", ", up)}] " +
                "(down is (rank, in) or (rank, in, kh, kw), up is (out, rank) or (out, rank, 1, 1)).");
        if (down[0] != up[1])
            throw new CheckpointFormatException($"{file.Source} has a LoRA layer whose ranks disagree: '{downName}' has rank {down[0]} (shape [{string.Join(", ", down)}]) but '{upName}' has {up[1]} (shape [{string.Join(", ", up)}]).");
        if (down[0] < 1) throw new CheckpointFormatException($"{file.Source} has a LoRA layer of rank 0: '{downName}'.");

        double? alpha = defaultAlpha;
        if (names.TryGetValue(LoraRole.Alpha, out string? alphaName))
        {
            if (file.Shape(alphaName).Aggregate(1L, (a, b) => a * b) != 1)
                throw new CheckpointFormatException($"{file.Source} has an alpha that is not one number: '{alphaName}' is [{string.Join(", ", file.Shape(alphaName))}].");
            using var a = file.Read(alphaName, ScalarType.Float64);
            using var flat = a.reshape(1);
            alpha = flat.data<double>()[0];
            if (!double.IsFinite(alpha.Value)) throw new CheckpointFormatException($"{file.Source} is corrupt: alpha '{alphaName}' is {alpha.Value}.");
        }
        var downTensor = ReadFinite(file, downName);
        try
        {
            var upTensor = ReadFinite(file, upName);
            return new LoraLayer(key.Component, key.Module, downName, downTensor, upTensor, alpha);
        }
        catch
        {
            downTensor.Dispose();
            throw;
        }
    }

    private static Tensor ReadFinite(ITensorFile file, string name)
    {
        var t = file.Read(name, ScalarType.Float32);
        using var finite = t.isfinite();
        using var all = finite.all();
        if (!all.item<bool>())
        {
            t.Dispose();
            throw new CheckpointFormatException($"{file.Source} is corrupt: tensor '{name}' holds NaN or infinite values.");
        }
        return t;
    }

    internal static string List(IReadOnlyCollection<string> names) =>
        string.Join(", ", names.Take(5).Select(n => $"'{n}'")) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");

    public void Dispose()
    {
        foreach (var layer in Layers) layer.Dispose();
    }
}
