using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Sends one HTTP/1.1 request with the request line exactly as written (HttpClient would normalize the path and
/// upper-case nothing, so it cannot send the spellings an attacker uses) and returns the status code and body.
/// </summary>
internal static class RawHttp
{
    public static async Task<(int Status, string Body)> SendAsync(int port, string method, string target, params string[] headers)
    {
        using var tcp = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await tcp.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = tcp.GetStream();
        var request = new StringBuilder().Append(method).Append(' ').Append(target).Append(" HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n");
        foreach (var header in headers)
        {
            request.Append(header).Append("\r\n");
        }

        var bytes = Encoding.Latin1.GetBytes(request.Append("\r\n").ToString());
        await stream.WriteAsync(bytes, timeout.Token);
        using var reader = new StreamReader(stream, Encoding.Latin1);
        var response = await reader.ReadToEndAsync(timeout.Token);
        var statusLine = response.AsSpan(0, response.IndexOf('\r', StringComparison.Ordinal));
        var status = int.Parse(statusLine.Slice(9, 3), provider: System.Globalization.CultureInfo.InvariantCulture);
        var bodyStart = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var body = bodyStart < 0 ? string.Empty : response[(bodyStart + 4)..];
        return (status, body);
    }
}
