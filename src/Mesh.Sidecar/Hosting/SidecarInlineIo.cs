using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// Runs the sidecar's request I/O on the socket event threads, as an event-loop proxy does (<c>Sidecar:InlineIo</c>, on
/// by default): a socket event continues the request on the thread that saw it, from Kestrel's read through the mesh's
/// outbound path and the connection to the upstream, instead of queueing a thread-pool work item at each step.
/// </summary>
/// <remarks>
/// Two runtime settings make it: Kestrel's <c>SocketTransportOptions.UnsafePreferInlineScheduling</c> for the
/// listeners, and <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> for every socket of the process (the upstream
/// connections too), which the runtime reads once, when the first socket operation starts: it is set here, before the
/// host has opened any, unless the operator set it. Measured with <c>--sidecar</c> (docs/performance.md, 2026-12-05):
/// at 1,000 requests/s the sidecar's CPU per request fell from 324 µs (each request woke pool threads that spun and
/// parked again) to 82 µs, and by ≈ 5 % in a closed loop; either setting alone leaves a thread-pool hop per request.
/// The condition is the one every
/// event-loop proxy has: no code on the request path may block, or it stalls every connection on its thread. The
/// sidecar's path is its own (Kestrel, YARP, Mesh.Client, which never blocks on I/O); <c>Sidecar:InlineIo=false</c>
/// returns to ASP.NET Core's defaults.
/// </remarks>
internal static class SidecarInlineIo
{
    /// <summary>The runtime's switch for completing socket operations on the event thread (read from the environment only).</summary>
    public const string SocketsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Applies <paramref name="inline"/> to the host being built; call before anything opens a socket.</summary>
    public static void Apply(WebApplicationBuilder builder, bool inline)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (inline && Environment.GetEnvironmentVariable(SocketsVariable) is null)
        {
            Environment.SetEnvironmentVariable(SocketsVariable, "1");
        }

        builder.WebHost.UseSockets(sockets => sockets.UnsafePreferInlineScheduling = inline);
    }
}
