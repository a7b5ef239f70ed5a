using AtomicFile = Microsoft.ML.Diffusion.Storage.AtomicFile;

namespace Microsoft.ML.Diffusion.Testing;

/// <summary>
/// A full disk for saves through the library's atomic writer: until disposed, writes to one path fail with
/// IOException("No space left on device") once the file holds <c>capacity</c> bytes, as write(2) fails with ENOSPC.
/// For the calling test only (the hook is per asynchronous flow).
/// </summary>
internal sealed class InjectedSaveFailure : IDisposable
{
    private readonly Func<string, Stream, Stream>? _previous;
    private int _saves;

    /// <summary>Saves to <paramref name="path"/> after the first <paramref name="succeeding"/> fail after <paramref name="capacity"/> bytes.</summary>
    public static InjectedSaveFailure FullDisk(string path, long capacity, int succeeding = 0) => new(Path.GetFullPath(path), capacity, succeeding);

    /// <summary>How many saves to the path were failed.</summary>
    public int Failed { get; private set; }

    private InjectedSaveFailure(string path, long capacity, int succeeding)
    {
        _previous = AtomicFile.StreamWrapper.Value;
        AtomicFile.StreamWrapper.Value = (target, stream) =>
        {
            if (target != path || _saves++ < succeeding) return stream;
            Failed++;
            return new FullDiskStream(stream, capacity);
        };
    }

    public void Dispose() => AtomicFile.StreamWrapper.Value = _previous;

    private sealed class FullDiskStream(Stream inner, long capacity) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void WriteByte(byte value) => Write([value]);

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            long room = capacity - _written;
            if (buffer.Length > room)
            {
                inner.Write(buffer[..(int)Math.Max(0, room)]);   // what fitted stays written, as on a disk that fills up
                _written = capacity;
                throw new IOException("No space left on device");
            }
            inner.Write(buffer);
            _written += buffer.Length;
        }
    }
}
