using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Mesh.Sidecar.Outbound;

namespace Mesh.Sidecar.Tests.Outbound;

public sealed class CleartextHttp2DetectionTests
{
    [Fact]
    public async Task StartsWithPreface_Http2Preface_TrueAndNothingConsumed()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"));

        Assert.True(await CleartextHttp2Detection.StartsWithPrefaceAsync(pipe.Reader, CancellationToken.None));
        Assert.Equal(28, (await pipe.Reader.ReadAsync()).Buffer.Length);
    }

    [Fact]
    public async Task StartsWithPreface_Http1Request_FalseAndNothingConsumed()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes("GET http://orders/ HTTP/1.1\r\n"));

        Assert.False(await CleartextHttp2Detection.StartsWithPrefaceAsync(pipe.Reader, CancellationToken.None));
        var read = await pipe.Reader.ReadAsync();
        Assert.StartsWith("GET http://orders/", Encoding.ASCII.GetString(read.Buffer.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartsWithPreface_PrefaceInPieces_WaitsForTheRest()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes("PRI * HT"));
        var detection = CleartextHttp2Detection.StartsWithPrefaceAsync(pipe.Reader, CancellationToken.None).AsTask();
        Assert.False(detection.IsCompleted);

        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes("TP/2.0\r\n\r\nSM\r\n\r\n"));

        Assert.True(await detection.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task StartsWithPreface_PrefixThenSomethingElse_False()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes("PRI * HTTP/1.1\r\n"));

        Assert.False(await CleartextHttp2Detection.StartsWithPrefaceAsync(pipe.Reader, CancellationToken.None));
    }

    [Fact]
    public async Task StartsWithPreface_SilentConnectionCancelled_Null()
    {
        var pipe = new Pipe();
        var detection = CleartextHttp2Detection.StartsWithPrefaceAsync(pipe.Reader, CancellationToken.None).AsTask();

        pipe.Reader.CancelPendingRead();

        Assert.Null(await detection.WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
