using System.Net;
using System.Net.Sockets;

namespace Mesh.Client.Tests.Support;

internal static class Ports
{
    /// <summary>A loopback port that was free a moment ago and has no listener now: connecting to it is refused.</summary>
    public static int Closed()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        var port = ((IPEndPoint)socket.LocalEndpoint).Port;
        socket.Stop();
        return port;
    }
}
