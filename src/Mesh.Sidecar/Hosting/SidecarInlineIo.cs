using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// Runs the sidecar's request I/O on the socket event threads, as an event-loop proxy does (<c>Sidecar:InlineIo</c>, on
/// by default): a socket event continues the request on the thread that saw it instead of queueing a thread-pool work
/// item at each step. For HTTP/1.1 that is the whole hop, from Kestrel's read through YARP and Mesh.Client to the
/// upstream connection and back; HTTP/2 streams (gRPC) still go through the pool, which Kestrel and SocketsHttpHandler
/// decide per stream.
/// </summary>
/// <remarks>
/// Two runtime settings make it: Kestrel's <c>SocketTransportOptions.UnsafePreferInlineScheduling</c> for the
/// listeners (<see cref="ApplyToKestrel"/>), and <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> for every socket of
/// the process, the upstream connections too (<see cref="ApplyToProcess"/>). The runtime reads that variable once, when
/// the first socket operation starts, and then runs one event thread per processor instead of one per ~30 processors
/// (<c>DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT</c> still decides when set). Measured with <c>--sidecar</c>
/// (docs/performance.md, 2026-12-05): at 1,000 requests/s the sidecar's CPU per request fell from 324 µs (each request
/// woke pool threads that spun and parked again) to 82 µs, and by ≈ 5 % in a closed loop; the socket setting alone gained
/// nothing at 1,000 requests/s.
/// <para>
/// The condition is every event loop's: nothing on the request path may block, or it stalls every connection on its
/// thread. The sidecar's path is its own (Kestrel, YARP, Mesh.Client), with no synchronous waits on I/O; what could
/// block is closed off where it is: handshakes never fetch certificates (<c>SvidValidator.HandshakeChainPolicy</c>), and
/// a full console log queue drops lines rather than wait. <c>Sidecar:InlineIo=false</c> returns to ASP.NET Core's
/// defaults.
/// </para>
/// </remarks>
internal static class SidecarInlineIo
{
    /// <summary>The runtime's switch for completing socket operations on the event thread (read from the environment only).</summary>
    public const string SocketsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Sets Kestrel's listeners to continue on the socket event thread (or not) in the host being built.</summary>
    public static void ApplyToKestrel(WebApplicationBuilder builder, bool inline)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.WebHost.UseSockets(sockets => sockets.UnsafePreferInlineScheduling = inline);
    }

    /// <summary>
    /// Sets the runtime's switch for this process when <paramref name="inline"/> and the operator has not set it; call
    /// before anything opens a socket (the process's first socket operation fixes the runtime's choice).
    /// </summary>
    public static void ApplyToProcess(bool inline)
    {
        if (inline && Environment.GetEnvironmentVariable(SocketsVariable) is null)
        {
            Environment.SetEnvironmentVariable(SocketsVariable, "1");
        }
    }
}
