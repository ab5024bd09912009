namespace Mesh.Sidecar.Hosting;

/// <summary>The sidecar's own settings: the <c>Sidecar</c> configuration section (flags map onto it).</summary>
internal sealed class SidecarOptions
{
    public const string SectionName = "Sidecar";

    /// <summary>The app's port on 127.0.0.1, where inbound mesh requests are forwarded. Required.</summary>
    public int AppPort { get; set; }

    /// <summary>How the sidecar speaks to the app: HTTP/1.1 or h2c (gRPC apps).</summary>
    public SidecarAppProtocol AppProtocol { get; set; } = SidecarAppProtocol.Http;

    /// <summary>The mesh port (mTLS by PeerAuthentication, AuthorizationPolicy), registered as the workload's port.</summary>
    public int InboundPort { get; set; } = 15006;

    public System.Net.IPAddress InboundAddress { get; set; } = System.Net.IPAddress.Any;

    /// <summary>The local HTTP proxy into the mesh, always on 127.0.0.1.</summary>
    public int OutboundPort { get; set; } = 15001;

    /// <summary>Readiness and metrics, excluded from the mesh.</summary>
    public int AdminPort { get; set; } = 15021;

    public System.Net.IPAddress AdminAddress { get; set; } = System.Net.IPAddress.Any;

    /// <summary>Whether requests for hosts that are not mesh services leave through the outbound port (else 502).</summary>
    public bool PassthroughNonMeshHosts { get; set; }

    /// <summary>How long the sidecar keeps serving after it left the mesh on SIGTERM (Istio's terminationDrainDuration).</summary>
    public TimeSpan DrainDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>An HTTP path on the app answering 2xx when it is ready; null: a TCP connect to the app port.</summary>
    public string? AppReadyPath { get; set; }

    /// <summary>
    /// Whether requests are processed on the socket event threads that saw their data, as an event-loop proxy (nginx,
    /// Envoy's workers) does, rather than handed to the thread pool at each socket event (<see cref="SidecarInlineIo"/>).
    /// </summary>
    public bool InlineIo { get; set; } = true;
}

/// <summary>The protocol between the sidecar and the app.</summary>
internal enum SidecarAppProtocol
{
    /// <summary>HTTP/1.1 (<c>http</c>).</summary>
    Http,

    /// <summary>HTTP/2 over cleartext with prior knowledge (<c>http2</c>), for gRPC apps.</summary>
    Http2,
}
