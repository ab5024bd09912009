namespace Mesh.Sidecar.Hosting;

/// <summary>The sidecar's flags: each one is a key of the <c>Sidecar</c> section (<c>--app-port 8080</c> = <c>Sidecar:AppPort=8080</c>).</summary>
internal static class SidecarCommandLine
{
    public static readonly IReadOnlyDictionary<string, string> SwitchMappings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["--app-port"] = "Sidecar:AppPort",
        ["--app-protocol"] = "Sidecar:AppProtocol",
        ["--app-ready-path"] = "Sidecar:AppReadyPath",
        ["--inbound-port"] = "Sidecar:InboundPort",
        ["--inbound-address"] = "Sidecar:InboundAddress",
        ["--outbound-port"] = "Sidecar:OutboundPort",
        ["--admin-port"] = "Sidecar:AdminPort",
        ["--admin-address"] = "Sidecar:AdminAddress",
        ["--drain-duration"] = "Sidecar:DrainDuration",
        ["--passthrough-non-mesh-hosts"] = "Sidecar:PassthroughNonMeshHosts",
        ["--inline-io"] = "Sidecar:InlineIo",
    };
}
