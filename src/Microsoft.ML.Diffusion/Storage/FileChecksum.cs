using System.Security.Cryptography;
using System.Text;

namespace Microsoft.ML.Diffusion.Storage;

/// <summary>
/// SHA-256 over a model's files, as model zips record it to find the same files again: each file's path relative to
/// the model's folder (forward slashes) and a newline, then its bytes, file after file in the order given.
/// </summary>
internal static class FileChecksum
{
    public static string Sha256(string root, IEnumerable<string> files)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (var file in files)
        {
            string relative = Path.GetRelativePath(root, file).Replace('\\', '/');
            hash.AppendData(Encoding.UTF8.GetBytes(relative + "\n"));
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) hash.AppendData(buffer, 0, read);
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>The checksum of one file, relative to its own folder (its name and bytes).</summary>
    public static string Sha256(string file)
    {
        string full = Path.GetFullPath(file);
        return Sha256(Path.GetDirectoryName(full)!, [full]);
    }
}
