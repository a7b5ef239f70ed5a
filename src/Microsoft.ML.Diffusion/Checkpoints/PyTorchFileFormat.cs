namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>
/// Which format a file torch.save may have written is in, by its first bytes: the zip archive of PyTorch 1.6 and later,
/// or the old format, a pickle stream that starts with PyTorch's magic number 0x1950a86a20f9469cfc6c. A file that is
/// neither is no PyTorch checkpoint at all.
/// </summary>
internal static class PyTorchFileFormat
{
    /// <summary>Bytes enough to tell the formats apart.</summary>
    public const int HeadLength = 32;

    // pickle's LONG1 opcode with 10 bytes: the magic number, little-endian.
    private static ReadOnlySpan<byte> LegacyMagic => [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

    /// <summary>The first bytes of <paramref name="path"/> (all of them when it is shorter).</summary>
    public static byte[] ReadHead(string path)
    {
        using var stream = File.OpenRead(path);
        var head = new byte[HeadLength];
        int read = stream.ReadAtLeast(head, HeadLength, throwOnEndOfStream: false);
        return head[..read];
    }

    /// <summary>A zip archive: its first local file header.</summary>
    public static bool IsZip(ReadOnlySpan<byte> head) => head.StartsWith("PK\x03\x04"u8);

    /// <summary>The old format: PROTO 2 or later, a FRAME from protocol 4 on, then the magic number.</summary>
    public static bool IsLegacy(ReadOnlySpan<byte> head)
    {
        if (head.Length < 2 || head[0] != 0x80 || head[1] < 2) return false;
        var rest = head[2..];
        if (rest.Length > 0 && rest[0] == 0x95) rest = rest.Length > 9 ? rest[9..] : [];   // FRAME and its 8-byte length
        return rest.StartsWith(LegacyMagic);
    }
}
