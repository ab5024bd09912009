using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Mesh.Sidecar.Tests.Tcp;

/// <summary>A one-shot TCP client for the tunnel tests: send a text, half-close, read everything back.</summary>
internal static class TcpExchange
{
    /// <summary>What came back before the peer closed; empty when the connection was reset (nothing came back).</summary>
    public static async Task<string> ExchangeAsync(int port, string text, TimeSpan deadline)
    {
        using var timeout = new CancellationTokenSource(deadline);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(text), timeout.Token);
        client.Client.Shutdown(SocketShutdown.Send);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        try
        {
            return await reader.ReadToEndAsync(timeout.Token);
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }
}
