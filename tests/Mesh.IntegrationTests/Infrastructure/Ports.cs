using System.Net;
using System.Net.Sockets;

namespace Mesh.IntegrationTests.Infrastructure;

internal static class Ports
{
    /// <summary>
    /// A loopback port that was free a moment ago and has no listener now: a process can be told to bind it, and
    /// connecting to it is refused until one does.
    /// </summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
