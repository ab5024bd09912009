using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Mesh.Sidecar.Tcp;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Sidecar.Tests.Tcp;

public sealed class TcpRelayTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RunAsync_DownstreamHalfCloses_EchoOfEveryByteStillArrives_ThenCompletes()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var upstream = await ConnectAsync(listener);
        var echo = EchoUntilEndAsync(upstream.Accepted);
        var downstream = new TestConnection();
        long received = 0, sent = 0;
        var relay = TcpRelay.RunAsync(
            downstream,
            upstream.Stream,
            () =>
            {
                upstream.Client.Shutdown(SocketShutdown.Send);
                return ValueTask.CompletedTask;
            },
            TimeSpan.FromHours(1),
            TimeProvider.System,
            n => Interlocked.Add(ref received, n),
            n => Interlocked.Add(ref sent, n),
            CancellationToken.None);

        var payload = RandomNumberGenerator.GetBytes(1024 * 1024);
        var write = Task.Run(async () =>
        {
            for (var offset = 0; offset < payload.Length; offset += 10_000)
            {
                await downstream.ClientWriter.WriteAsync(payload.AsMemory(offset, Math.Min(10_000, payload.Length - offset)));
            }

            // The client's half-close: the echo only ends once the upstream has seen the end of stream.
            await downstream.ClientWriter.CompleteAsync();
        });
        var answer = await ReadToEndAsync(downstream.ClientReader).WaitAsync(Deadline);
        await write.WaitAsync(Deadline);

        Assert.Equal(TcpRelayEnd.Completed, await relay.WaitAsync(Deadline));
        Assert.True(payload.AsSpan().SequenceEqual(answer), "the echoed bytes differ from the bytes sent");
        Assert.Equal(payload.Length, Interlocked.Read(ref received));
        Assert.Equal(payload.Length, Interlocked.Read(ref sent));
        Assert.Equal(payload.Length, await echo.WaitAsync(Deadline));
        upstream.Dispose();
    }

    [Fact]
    public async Task RunAsync_UpstreamEndsFirst_DownstreamOutputCompletes_RelayEndsWhenClientFinishes()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var upstream = await ConnectAsync(listener);
        var downstream = new TestConnection();
        var relay = TcpRelay.RunAsync(downstream, upstream.Stream, () => ValueTask.CompletedTask, TimeSpan.Zero, TimeProvider.System, _ => { }, _ => { }, CancellationToken.None);

        await upstream.Accepted.SendAsync("bye"u8.ToArray());
        upstream.Accepted.Shutdown(SocketShutdown.Send);

        Assert.Equal("bye"u8.ToArray(), await ReadToEndAsync(downstream.ClientReader).WaitAsync(Deadline));
        Assert.False(relay.IsCompleted);
        await downstream.ClientWriter.CompleteAsync();
        Assert.Equal(TcpRelayEnd.Completed, await relay.WaitAsync(Deadline));
        upstream.Dispose();
    }

    [Fact]
    public async Task RunAsync_NoByteForTheIdleTimeout_ClosesBoth_EachByteRestartsTheClock()
    {
        var time = new FakeTimeProvider();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var upstream = await ConnectAsync(listener);
        var downstream = new TestConnection();
        var relay = TcpRelay.RunAsync(downstream, upstream.Stream, () => ValueTask.CompletedTask, TimeSpan.FromHours(1), time, _ => { }, _ => { }, CancellationToken.None);

        time.Advance(TimeSpan.FromMinutes(59));
        await upstream.Accepted.SendAsync(new byte[] { 42 });
        var read = await downstream.ClientReader.ReadAsync().AsTask().WaitAsync(Deadline);
        Assert.Equal(42, read.Buffer.FirstSpan[0]);
        downstream.ClientReader.AdvanceTo(read.Buffer.End);

        time.Advance(TimeSpan.FromMinutes(59));
        Assert.False(relay.IsCompleted, "the byte 59 minutes in restarted the idle clock");

        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(TcpRelayEnd.IdleTimeout, await relay.WaitAsync(Deadline));
        upstream.Dispose();
    }

    [Fact]
    public async Task RunAsync_UpstreamResets_Aborted_AndTheDownstreamIsClosed()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var upstream = await ConnectAsync(listener);
        var downstream = new TestConnection();
        var relay = TcpRelay.RunAsync(downstream, upstream.Stream, () => ValueTask.CompletedTask, TimeSpan.Zero, TimeProvider.System, _ => { }, _ => { }, CancellationToken.None);

        upstream.Accepted.LingerState = new LingerOption(true, 0);
        upstream.Accepted.Close(); // RST

        Assert.Equal(TcpRelayEnd.Aborted, await relay.WaitAsync(Deadline));
        upstream.Dispose();
    }

    private static async Task<Upstream> ConnectAsync(TcpListener listener)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptSocketAsync();
        await client.ConnectAsync((IPEndPoint)listener.LocalEndpoint);
        return new Upstream(client, new NetworkStream(client, ownsSocket: false), await accept);
    }

    private static async Task<long> EchoUntilEndAsync(Socket socket)
    {
        var buffer = new byte[8192];
        long total = 0;
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0)
        {
            total += read;
            await socket.SendAsync(buffer.AsMemory(0, read));
        }

        socket.Shutdown(SocketShutdown.Send);
        return total;
    }

    private static async Task<byte[]> ReadToEndAsync(PipeReader reader)
    {
        using var result = new MemoryStream();
        while (true)
        {
            var read = await reader.ReadAsync();
            foreach (var segment in read.Buffer)
            {
                result.Write(segment.Span);
            }

            reader.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                return result.ToArray();
            }
        }
    }

    private sealed record Upstream(Socket Client, NetworkStream Stream, Socket Accepted) : IDisposable
    {
        public void Dispose()
        {
            Stream.Dispose();
            Client.Dispose();
            Accepted.Dispose();
        }
    }

    /// <summary>The downstream connection's pipes as the relay sees them, and the client's ends of them.</summary>
    private sealed class TestConnection : IDuplexPipe
    {
        private readonly Pipe _fromClient = new();
        private readonly Pipe _toClient = new();

        public PipeReader Input => _fromClient.Reader;

        public PipeWriter Output => _toClient.Writer;

        public PipeWriter ClientWriter => _fromClient.Writer;

        public PipeReader ClientReader => _toClient.Reader;
    }
}
