using System.ComponentModel.DataAnnotations;

namespace Mesh.Client;

/// <summary>Options of the service mesh client, bound from the <c>Mesh</c> configuration section.</summary>
public sealed class ServiceMeshOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Mesh";

    /// <summary>Gets the control plane connection settings.</summary>
    public ControlPlaneOptions ControlPlane { get; } = new();

    /// <summary>Gets or sets this workload's service name; when set, the app registers itself as an instance of it.</summary>
    public string? Service { get; set; }

    /// <summary>Gets or sets this workload's namespace; short service names resolve in it.</summary>
    [Required]
    public string Namespace { get; set; } = "default";

    /// <summary>Gets or sets the service account this workload runs as (defaults to <see cref="Service"/>).</summary>
    public string? ServiceAccount { get; set; }

    /// <summary>Gets or sets the cluster domain of fully qualified service names.</summary>
    [Required]
    public string ClusterDomain { get; set; } = "cluster.local";

    /// <summary>Gets the workload labels sent with the registration; <c>app=&lt;Service&gt;</c> is added when absent.</summary>
    public IDictionary<string, string> Labels { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// Gets or sets this workload's locality, <c>region</c>, <c>region/zone</c> or <c>region/zone/subzone</c>: sent as the xDS
    /// node locality (DestinationRule <c>localityLbSetting</c> prefers endpoints near it) and with the self-registration.
    /// Unset: no locality.
    /// </summary>
    public string? Locality { get; set; }

    /// <summary>Gets the self-registration settings.</summary>
    public RegistrationOptions Registration { get; } = new();

    /// <summary>Gets the retry, timeout and circuit breaker settings applied to calls to mesh services.</summary>
    public MeshResilienceOptions Resilience { get; } = new();

    /// <summary>Gets the workload identity settings (secure mode: an <c>https://</c> control plane).</summary>
    public MeshIdentityOptions Identity { get; } = new();

    /// <summary>Gets the inbound (Kestrel) mTLS settings.</summary>
    public MeshInboundOptions Inbound { get; } = new();

    /// <summary>Gets the telemetry settings (the local label values of Istio's standard metrics).</summary>
    public MeshTelemetryOptions Telemetry { get; } = new();
}

/// <summary>
/// The local label values of Istio's standard metrics that <see cref="ServiceMeshOptions"/> does not already give
/// (<c>app</c> and <c>version</c> come from <see cref="ServiceMeshOptions.Labels"/>).
/// </summary>
public sealed class MeshTelemetryOptions
{
    /// <summary>
    /// Gets or sets the cluster ID reported as <c>source_cluster</c>/<c>destination_cluster</c>: Istio's default,
    /// <c>Kubernetes</c>, unless the mesh sets <c>global.multiCluster.clusterName</c>.
    /// </summary>
    public string ClusterId { get; set; } = "Kubernetes";

    /// <summary>Gets or sets the workload name (<c>source_workload</c>/<c>destination_workload</c>); defaults to <see cref="ServiceMeshOptions.Service"/>.</summary>
    public string? Workload { get; set; }

    /// <summary>Gets the access log settings (off by default).</summary>
    public MeshAccessLogOptions AccessLog { get; } = new();
}

/// <summary>
/// The access log: one structured <c>ILogger</c> entry per request (category <see cref="Telemetry.MeshTelemetry.AccessLogCategory"/>),
/// with the fields of Istio's default access log format and the mesh's own (route, upstream host, peer identity, attempts).
/// </summary>
public sealed class MeshAccessLogOptions
{
    /// <summary>Gets or sets whether requests are logged. Off by default: then a request pays one check and nothing else.</summary>
    public bool Enabled { get; set; }

    /// <summary>Gets or sets the share of requests logged, from 0 to 1 (default 1: every request).</summary>
    public double SampleRate { get; set; } = 1.0;

    /// <summary>
    /// Gets or sets whether a request that failed (response code 0 or at least 400, a gRPC status other than OK, or a
    /// response flag other than DI) is logged whatever <see cref="SampleRate"/> decided (default true), as Istio users
    /// filter with <c>response.code &gt;= 400</c>.
    /// </summary>
    public bool AlwaysLogErrors { get; set; } = true;

    /// <summary>
    /// Gets or sets whether the <c>path</c> field keeps the query string (default false). Envoy logs it, but queries
    /// carry secrets (Istio's RequestAuthentication itself reads tokens from <c>?access_token=</c>), so it is left out
    /// unless asked for.
    /// </summary>
    public bool IncludeQuery { get; set; }
}

/// <summary>The workload identity: how this app authenticates to the CA and which certificate it asks for.</summary>
public sealed class MeshIdentityOptions
{
    /// <summary>Gets or sets the bootstrap token sent to the CA for the first certificate.</summary>
    public string? Token { get; set; }

    /// <summary>Gets or sets a file holding the bootstrap token (read at every first-certificate request).</summary>
    public string? TokenFile { get; set; }

    /// <summary>
    /// Gets or sets an opt-in file (mode 0600) where the workload keeps its private key and certificate chain, so that after a
    /// restart it renews with its still-valid certificate instead of a new bootstrap token. Unset: the key never leaves memory.
    /// </summary>
    public string? CredentialFile { get; set; }

    /// <summary>Gets or sets the SPIFFE trust domain of the mesh.</summary>
    public string TrustDomain { get; set; } = "cluster.local";

    /// <summary>Gets or sets the requested certificate lifetime; the certificate is renewed at about half of it.</summary>
    public TimeSpan CertificateTtl { get; set; } = TimeSpan.FromHours(24);
}

/// <summary>Inbound mTLS on every Kestrel endpoint.</summary>
public sealed class MeshInboundOptions
{
    /// <summary>
    /// Gets or sets the PeerAuthentication mode of a port until the control plane sends one (<c>Strict</c>, <c>Permissive</c>
    /// or <c>Disable</c>): <c>Strict</c> by default, so a workload that cannot reach the control plane fails closed.
    /// </summary>
    public string Mode { get; set; } = "Strict";
}

/// <summary>How the client reaches the control plane.</summary>
public sealed class ControlPlaneOptions
{
    /// <summary>Gets or sets the control plane's xDS address, e.g. <c>http://127.0.0.1:15010</c>.</summary>
    /// <remarks>
    /// One address may still reach several replicas: a Kubernetes Service name, where each new connection goes to a ready
    /// pod. Use <see cref="Addresses"/> instead to list replicas that have addresses of their own.
    /// </remarks>
    public Uri? Address { get; set; }

    /// <summary>
    /// Gets the addresses of control-plane replicas (<c>Mesh:ControlPlane:Addresses:0</c>, <c>…:1</c>), in priority order,
    /// instead of <see cref="Address"/>: the client uses the first one it reaches, and every call (ADS, certificates, trust
    /// bundle) moves on to the next when one is unreachable or answers UNAVAILABLE. The workload registers with each of
    /// them, since replicas outside Kubernetes do not share registrations. All use the same scheme.
    /// </summary>
    public IList<Uri> Addresses { get; } = [];

    /// <summary>Gets the replicas to use: <see cref="Addresses"/>, or else <see cref="Address"/> alone.</summary>
    internal IReadOnlyList<Uri> EffectiveAddresses => Addresses.Count > 0 ? [.. Addresses] : Address is { } address ? [address] : [];

    /// <summary>Gets whether the control plane is reached over TLS (every address validated to the same scheme).</summary>
    internal bool IsSecure => EffectiveAddresses is [{ } first, ..] && first.Scheme == Uri.UriSchemeHttps;

    /// <summary>Gets or sets the PEM file of the mesh root trusted on first contact with an <c>https://</c> control plane.</summary>
    public string? RootCertificate { get; set; }

    /// <summary>Gets or sets the control plane's expected SPIFFE ID (default <c>spiffe://&lt;TrustDomain&gt;/ns/mesh-system/sa/mesh-control-plane</c>).</summary>
    public string? Identity { get; set; }

    /// <summary>Gets or sets the first reconnect delay; later ones double up to <see cref="MaxReconnectDelay"/>, with jitter.</summary>
    public TimeSpan InitialReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Gets or sets the longest reconnect delay.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Gets or sets which services the client subscribes to: <c>Wildcard</c> (the default: every listener and cluster the
    /// control plane serves, as a sidecar without a Sidecar resource) or <c>OnDemand</c> (the proxyless gRPC model: only the
    /// services the app calls, subscribed on the first call, plus <see cref="Warm"/>).
    /// </summary>
    public string Subscriptions { get; set; } = ControlPlaneSubscriptions.Wildcard;

    /// <summary>
    /// Gets the service hosts subscribed at start in <c>OnDemand</c> mode (<c>orders</c>, <c>orders.shop</c>,
    /// <c>payments.example.com:8443</c>…), so their first call does not wait. Hosts that do not look like Kubernetes
    /// service names (ServiceEntry hosts such as <c>payments.example.com</c>) are mesh services in that mode only when listed here.
    /// </summary>
    public IList<string> Warm { get; } = [];

    /// <summary>Gets or sets how long a first call to a service not yet subscribed waits for its configuration (<c>OnDemand</c> mode).</summary>
    public TimeSpan SubscriptionTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Gets or sets after how long without a call a service is unsubscribed (<c>OnDemand</c> mode; <see cref="Warm"/> hosts stay).</summary>
    public TimeSpan UnusedServiceTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Gets or sets the most service hosts subscribed on demand at once (<c>OnDemand</c> mode), counting hosts being
    /// looked up and hosts recently found not to exist: an app calling ever new host names cannot make the client
    /// subscribe to all of them. Beyond it, a call to a new host fails naming this option.
    /// </summary>
    public int MaxOnDemandServices { get; set; } = 1000;

    /// <summary>
    /// Gets or sets the ADS variant: <c>StateOfTheWorld</c> (the default, <c>StreamAggregatedResources</c>: every response
    /// lists the whole set of its type, as istiod and every xDS server speak) or <c>Delta</c> (<c>DeltaAggregatedResources</c>:
    /// responses carry only what changed and what was removed, and a reconnect resends only what changed meanwhile).
    /// </summary>
    public string Protocol { get; set; } = ControlPlaneProtocols.StateOfTheWorld;
}

/// <summary>The values of <see cref="ControlPlaneOptions.Protocol"/>.</summary>
public static class ControlPlaneProtocols
{
    /// <summary>State-of-the-world ADS (the default).</summary>
    public const string StateOfTheWorld = "StateOfTheWorld";

    /// <summary>Incremental (delta) ADS.</summary>
    public const string Delta = "Delta";
}

/// <summary>The values of <see cref="ControlPlaneOptions.Subscriptions"/>.</summary>
public static class ControlPlaneSubscriptions
{
    /// <summary>Every listener and cluster the control plane serves (the default).</summary>
    public const string Wildcard = "Wildcard";

    /// <summary>Only the services the app calls (subscribed on the first call) and <see cref="ControlPlaneOptions.Warm"/>.</summary>
    public const string OnDemand = "OnDemand";
}

/// <summary>Self-registration of this app's Kestrel addresses as a WorkloadEntry of <see cref="ServiceMeshOptions.Service"/>.</summary>
public sealed class RegistrationOptions
{
    /// <summary>Gets or sets whether the app registers itself (only when a service name is set).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Gets or sets the address this workload is known by in the mesh: advertised when it registers and, registering or
    /// not, the address of the inbound listeners whose policy it enforces (on Kubernetes, where workloads come from
    /// EndpointSlices, the Pod IP: the downward API's <c>status.podIP</c>). Defaults to the Kestrel address (or 127.0.0.1
    /// for wildcard bindings).
    /// </summary>
    public string? Address { get; set; }

    /// <summary>Gets or sets the requested lease; the registration is renewed at a third of it.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>Resilience of calls to mesh services: timeouts, retries and a circuit breaker per destination service.</summary>
public sealed class MeshResilienceOptions
{
    /// <summary>Gets or sets the time budget of a call including every retry.</summary>
    public TimeSpan TotalTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets the time budget of one attempt.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets how many times a failed idempotent call is retried (0 disables retries).</summary>
    [Range(0, 10)]
    public int MaxRetryAttempts { get; set; } = 2;

    /// <summary>Gets or sets the base delay between retries (exponential with jitter).</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(25);

    /// <summary>Gets or sets the failure ratio within <see cref="CircuitBreakerSamplingDuration"/> that opens a service's circuit.</summary>
    [Range(0.01, 1.0)]
    public double CircuitBreakerFailureRatio { get; set; } = 0.5;

    /// <summary>Gets or sets the number of calls in the sampling window before the circuit can open.</summary>
    [Range(2, int.MaxValue)]
    public int CircuitBreakerMinimumThroughput { get; set; } = 100;

    /// <summary>Gets or sets the circuit breaker's sampling window.</summary>
    public TimeSpan CircuitBreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long an open circuit rejects calls.</summary>
    public TimeSpan CircuitBreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(5);
}
