using System.Threading.Channels;
using Microsoft.ML.Diffusion.Serving;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>Hands the service's progress reports (made on its worker thread) to the request that streams them.</summary>
internal sealed class ProgressChannel : IProgress<GenerationProgress>
{
    private readonly Channel<GenerationProgress> _channel = Channel.CreateUnbounded<GenerationProgress>(new UnboundedChannelOptions { SingleReader = true });

    public ChannelReader<GenerationProgress> Reader => _channel.Reader;

    public void Report(GenerationProgress value) => _channel.Writer.TryWrite(value);

    public void Complete() => _channel.Writer.TryComplete();
}
