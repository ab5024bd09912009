using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.Client.Hosting;

/// <summary>
/// Matches Kestrel endpoints to server addresses as endpoints (address and port), never by port number alone: two
/// endpoints may share a port on different addresses. Bound ports are read when asked, so port-0 bindings count.
/// </summary>
internal static class KestrelEndpoints
{
    /// <summary>Whether <paramref name="listen"/> is bound to <paramref name="address"/>:<paramref name="port"/> (a wildcard binding covers every address).</summary>
    public static bool Binds(ListenOptions listen, IPAddress address, int port) =>
        listen.IPEndPoint is { } bound
        && bound.Port == port
        && (bound.Address.Equals(address) || bound.Address.Equals(IPAddress.Any) || bound.Address.Equals(IPAddress.IPv6Any));

    /// <summary>The address of a server address's host as Kestrel reports it (<c>127.0.0.1</c>, <c>[::1]</c>, <c>localhost</c>), or null for a name.</summary>
    public static IPAddress? AddressOf(Uri serverAddress)
    {
        ArgumentNullException.ThrowIfNull(serverAddress);
        var host = serverAddress.Host.Trim('[', ']');
        return string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) ? IPAddress.Loopback
            : IPAddress.TryParse(host, out var address) ? address
            : null;
    }
}
