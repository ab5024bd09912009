namespace Mesh.Sidecar.Hosting;

/// <summary>Timeouts the sidecar's proxies share.</summary>
internal static class SidecarTimeouts
{
    /// <summary>
    /// How long a proxied request may sit with no bytes moving either way before it is cut: Envoy's HTTP connection
    /// manager <c>stream_idle_timeout</c> default, 5 minutes (envoy docs/root/faq/configuration/timeouts.rst, "Stream
    /// timeouts"). It replaces YARP's <c>ForwarderRequestConfig.ActivityTimeout</c> default of 100 s, which would cut idle
    /// gRPC streams and long polls and cap route timeouts above 100 s.
    /// </summary>
    public static readonly TimeSpan StreamIdleTimeout = TimeSpan.FromMinutes(5);
}
