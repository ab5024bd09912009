using System.Collections.Concurrent;
using System.Globalization;
using Mesh.Client.Discovery;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Telemetry;

/// <summary>
/// Records Istio's standard request metrics (<see cref="MeshMetrics"/>) with Istio's full label set: <c>reporter="source"</c>
/// for this app's calls to mesh services, <c>reporter="destination"</c> for the calls Kestrel receives. Each distinct
/// combination of labels is built once and cached (at most <see cref="MaxLabelSets"/> per reporter), so recording a
/// request allocates nothing; when nothing listens the callers skip it all on <see cref="Enabled"/>.
/// </summary>
/// <remarks>
/// Label values are never empty (Prometheus reads <c>x=""</c> as an absent label and Kiali drops such series), except
/// <c>grpc_response_status</c> of a non-gRPC request, which Istio itself leaves empty. Values from the network (the peer's
/// SPIFFE ID and the namespace in it) are kept only when well formed, else folded to <c>unknown</c>.
/// </remarks>
internal sealed class IstioRequestMetrics
{
    /// <summary>The most label sets cached per reporter; past it, network-derived values fold to <c>unknown</c>, and a set still new is built per request.</summary>
    public const int MaxLabelSets = 1024;

    public const string Unknown = "unknown";

    /// <summary>Istio's <c>destination_service_name</c> of a request refused because its host is no mesh service (REGISTRY_ONLY).</summary>
    public const string BlackHoleCluster = "BlackHoleCluster";

    /// <summary>Istio's <c>destination_service_name</c> of a request passed through to a host outside the mesh (ALLOW_ANY).</summary>
    public const string PassthroughCluster = "PassthroughCluster";

    /// <summary>
    /// The most distinct hosts outside the mesh kept as <c>destination_service</c>; a later one, or one that is no host name
    /// or IP literal, reports <c>unknown</c>. The host is the request's, so it must not grow the series without bound.
    /// </summary>
    public const int MaxNonMeshHosts = 32;

    /// <summary>
    /// How many leading labels of a request's label set the gRPC message counters carry: <c>reporter</c> and the
    /// source/destination peer labels, without <c>request_protocol</c>, <c>response_code</c>, <c>grpc_response_status</c>,
    /// <c>response_flags</c> and <c>connection_security_policy</c> (istio_stats.cc adds the message counters with the tags
    /// it has before those five are appended; Kiali's gRPC queries group by the same set). Both builders put them last.
    /// </summary>
    internal const int MessageLabelCount = 20;

    private readonly MeshMetrics _metrics;
    private readonly LocalWorkload _local;
    private readonly ConcurrentDictionary<SourceKey, KeyValuePair<string, object?>[]> _source = new();
    private readonly ConcurrentDictionary<DestinationKey, KeyValuePair<string, object?>[]> _destination = new();
    private readonly ConcurrentDictionary<string, string> _nonMeshHosts = new(StringComparer.OrdinalIgnoreCase);

    // Made once: a method group converted per request would allocate its delegate each time.
    private readonly Func<SourceKey, KeyValuePair<string, object?>[]> _buildSource;
    private readonly Func<DestinationKey, KeyValuePair<string, object?>[]> _buildDestination;

    public IstioRequestMetrics(MeshMetrics metrics, IOptions<ServiceMeshOptions> options)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(options);
        _metrics = metrics;
        _local = LocalWorkload.From(options.Value);
        _buildSource = BuildSource;
        _buildDestination = BuildDestination;
    }

    /// <summary>Gets whether any listener takes a request metric. The one check a request pays when none does.</summary>
    public bool Enabled => _metrics.RequestsEnabled;

    /// <summary>Gets the number of cached label sets of both reporters (for tests).</summary>
    internal int CachedLabelSets => _source.Count + _destination.Count;

    /// <summary>
    /// Records one request this app sent to <paramref name="service"/> (reporter <c>source</c>), whose last attempt went to
    /// the endpoint <paramref name="peer"/> names (null: unknown) over a connection whose mTLS handshake verified
    /// <paramref name="upstreamPrincipal"/> (null: plaintext, or no connection made); for a gRPC call also its message
    /// counts (<paramref name="requestMessages"/>/<paramref name="responseMessages"/>).
    /// </summary>
    public void RecordOutbound(MeshService service, EndpointWorkload? peer, string? upstreamPrincipal, bool grpc, int responseCode, int grpcStatus, ResponseFlags flags, double milliseconds, long requestBytes, long responseBytes, long requestMessages = 0, long responseMessages = 0)
    {
        // Full: the endpoint's workload (from metadata a registering workload controls) folds to unknown, which bounds what
        // endpoints can add. The upstream principal is not folded: secure naming held it to the cluster's few identities.
        var key = new SourceKey(service.Host, peer, upstreamPrincipal, grpc, responseCode, grpcStatus, flags);
        var labels = Lookup(_source, key, peer is null ? null : key with { Peer = null }, _buildSource);

        _metrics.RecordRequest(labels, milliseconds, requestBytes, responseBytes);
        if (grpc)
        {
            _metrics.RecordMessages(labels.AsSpan(0, MessageLabelCount), requestMessages, responseMessages);
        }
    }

    /// <summary>
    /// Records one request this app sent to <paramref name="host"/>, which is no mesh service (reporter <c>source</c>), as
    /// Istio reports it: <c>destination_service_name</c> <see cref="PassthroughCluster"/> when it was passed through
    /// (<paramref name="passedThrough"/>), else <see cref="BlackHoleCluster"/>; <c>destination_service</c> the host, lower-cased,
    /// for the first <see cref="MaxNonMeshHosts"/> distinct hosts, then <c>unknown</c>. Counted as HTTP: nothing reads the
    /// gRPC framing of a request outside the mesh.
    /// </summary>
    public void RecordNonMesh(string host, bool passedThrough, int responseCode, ResponseFlags flags, double milliseconds, long requestBytes, long responseBytes)
    {
        ArgumentNullException.ThrowIfNull(host);
        var key = new SourceKey(NonMeshHostLabel(host), Peer: null, UpstreamPrincipal: null, Grpc: false, responseCode, GrpcStatus: -1, flags, passedThrough ? PassthroughCluster : BlackHoleCluster);
        _metrics.RecordRequest(Lookup(_source, key, folded: null, _buildSource), milliseconds, requestBytes, responseBytes);
    }

    /// <summary>
    /// Records one request Kestrel received (reporter <c>destination</c>) from the peer <paramref name="peerSpiffeId"/>
    /// (null over plaintext), over mTLS or not.
    /// </summary>
    public void RecordInbound(string? peerSpiffeId, bool mutualTls, bool grpc, int responseCode, int grpcStatus, ResponseFlags flags, double milliseconds, long requestBytes, long responseBytes, long requestMessages = 0, long responseMessages = 0)
    {
        // Full: the peer (the one value from the network) folds to unknown, which bounds what callers can add.
        var key = new DestinationKey(peerSpiffeId, mutualTls, grpc, responseCode, grpcStatus, flags);
        var labels = Lookup(_destination, key, peerSpiffeId is null ? null : key with { Peer = null }, _buildDestination);

        _metrics.RecordRequest(labels, milliseconds, requestBytes, responseBytes);
        if (grpc)
        {
            _metrics.RecordMessages(labels.AsSpan(0, MessageLabelCount), requestMessages, responseMessages);
        }
    }

    // Kept while fewer than MaxNonMeshHosts are (a race may add a few more, one per thread); a known host allocates nothing.
    private string NonMeshHostLabel(string host)
    {
        if (_nonMeshHosts.TryGetValue(host, out var label))
        {
            return label;
        }

        return _nonMeshHosts.Count < MaxNonMeshHosts && LabelRules.IsHostName(host)
            ? _nonMeshHosts.GetOrAdd(host, host.ToLowerInvariant())
            : Unknown;
    }

    /// <summary>
    /// The label set of <paramref name="key"/>, built once and cached while fewer than <see cref="MaxLabelSets"/> are; once
    /// full, a new key's network-derived value folds (<paramref name="folded"/>, when it has one), and a set still new is
    /// built for this request alone.
    /// </summary>
    private static KeyValuePair<string, object?>[] Lookup<TKey>(
        ConcurrentDictionary<TKey, KeyValuePair<string, object?>[]> cache,
        TKey key,
        TKey? folded,
        Func<TKey, KeyValuePair<string, object?>[]> build)
        where TKey : struct
    {
        if (cache.TryGetValue(key, out var labels))
        {
            return labels;
        }

        if (cache.Count >= MaxLabelSets && folded is { } fold)
        {
            key = fold;
            if (cache.TryGetValue(key, out labels))
            {
                return labels;
            }
        }

        labels = build(key);
        return cache.Count < MaxLabelSets ? cache.GetOrAdd(key, labels) : labels;
    }

    /// <summary>
    /// The labels of Istio's TCP metrics for a connection this workload opened to <paramref name="serviceHost"/> (reporter
    /// <c>source</c>): the request labels less <c>response_code</c> and <c>grpc_response_status</c>, <c>request_protocol</c>
    /// <c>tcp</c>, and <c>destination_principal</c> from the upstream certificate (<paramref name="upstreamPrincipal"/>;
    /// null before or without a handshake). Built once per connection by the caller.
    /// </summary>
    public KeyValuePair<string, object?>[] TcpSourceLabels(string serviceHost, string? upstreamPrincipal, ResponseFlags flags)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceHost);
        return Tcp(BuildSource(new SourceKey(serviceHost, Peer: null, upstreamPrincipal, Grpc: false, ResponseCode: 0, GrpcStatus: -1, flags)));
    }

    /// <summary>
    /// The labels of Istio's TCP metrics for a connection this workload accepted from <paramref name="peerSpiffeId"/> (reporter
    /// <c>destination</c>; null over plaintext).
    /// </summary>
    public KeyValuePair<string, object?>[] TcpDestinationLabels(string? peerSpiffeId, bool mutualTls, ResponseFlags flags) =>
        Tcp(BuildDestination(new DestinationKey(peerSpiffeId, mutualTls, Grpc: false, ResponseCode: 0, GrpcStatus: -1, flags)));

    private static KeyValuePair<string, object?>[] Tcp(KeyValuePair<string, object?>[] request)
    {
        var result = new List<KeyValuePair<string, object?>>(request.Length);
        foreach (var label in request)
        {
            switch (label.Key)
            {
                case "response_code" or "grpc_response_status":
                    continue;
                case "request_protocol":
                    result.Add(new(label.Key, "tcp"));
                    continue;
            }

            result.Add(label);
        }

        return [.. result];
    }

    private KeyValuePair<string, object?>[] BuildSource(SourceKey key)
    {
        // A host outside the mesh: Istio's cluster name, and no namespace nor cluster it could know.
        var (name, ns) = key.ServiceName is { } cluster ? (cluster, Unknown) : SplitServiceHost(key.ServiceHost);
        var local = _local;
        var peer = key.Peer;

        // As Istio's client side: both principals come from the upstream connection's certificates (peer and local SAN),
        // so a plaintext upstream, or none, has neither.
        var upstream = PeerIdentity.Fold(key.UpstreamPrincipal).Principal;
        return
        [
            new("reporter", "source"),
            new("source_workload", local.Workload),
            new("source_workload_namespace", local.Namespace),
            new("source_principal", upstream == Unknown ? Unknown : local.Principal),
            new("source_app", local.App),
            new("source_version", local.Version),
            new("source_canonical_service", local.CanonicalService),
            new("source_canonical_revision", local.CanonicalRevision),
            new("source_cluster", local.Cluster),

            // The peer's workload, canonical service and revision from istiod's endpoint metadata, as Istio's client side
            // reports them without a metadata exchange (which a proxyless client does not do); its app and version labels
            // travel only in that exchange, so they stay unknown, as Istio's do from endpoint metadata alone.
            new("destination_workload", peer?.Workload ?? Unknown),
            new("destination_workload_namespace", peer is { Namespace: not Unknown } ? peer.Namespace : ns),
            new("destination_principal", upstream),
            new("destination_app", Unknown),
            new("destination_version", Unknown),
            new("destination_service", key.ServiceHost),
            new("destination_service_name", name),
            new("destination_service_namespace", ns),
            new("destination_canonical_service", peer?.CanonicalService ?? Unknown),
            new("destination_canonical_revision", peer?.CanonicalRevision ?? "latest"),
            new("destination_cluster", peer?.Cluster ?? (key.ServiceName is null ? local.Cluster : Unknown)),
            new("request_protocol", key.Grpc ? "grpc" : "http"),
            new("response_code", key.ResponseCode.ToString(CultureInfo.InvariantCulture)),
            new("grpc_response_status", GrpcStatusLabel(key.Grpc, key.GrpcStatus, key.ResponseCode)),
            new("response_flags", key.Flags.ToLabel()),

            // As Istio's client side: the outbound proxy does not report the policy (istio_stats.cc).
            new("connection_security_policy", Unknown),
        ];
    }

    private KeyValuePair<string, object?>[] BuildDestination(DestinationKey key)
    {
        var local = _local;
        var peer = PeerIdentity.Fold(key.Peer);
        return
        [
            new("reporter", "destination"),
            new("source_workload", Unknown),
            new("source_workload_namespace", peer.Namespace),
            new("source_principal", peer.Principal),
            new("source_app", Unknown),
            new("source_version", Unknown),
            new("source_canonical_service", Unknown),
            new("source_canonical_revision", "latest"),

            // One mesh, one cluster: a caller with a known namespace and an unknown cluster would be dropped by Kiali.
            new("source_cluster", local.Cluster),
            new("destination_workload", local.Workload),
            new("destination_workload_namespace", local.Namespace),
            // As Istio's server side: the local SAN of the caller's connection, so only over mTLS.
            new("destination_principal", key.MutualTls ? local.Principal : Unknown),
            new("destination_app", local.App),
            new("destination_version", local.Version),
            new("destination_service", local.ServiceHost),
            new("destination_service_name", local.ServiceName),
            new("destination_service_namespace", local.Namespace),
            new("destination_canonical_service", local.CanonicalService),
            new("destination_canonical_revision", local.CanonicalRevision),
            new("destination_cluster", local.Cluster),
            new("request_protocol", key.Grpc ? "grpc" : "http"),
            new("response_code", key.ResponseCode.ToString(CultureInfo.InvariantCulture)),
            new("grpc_response_status", GrpcStatusLabel(key.Grpc, key.GrpcStatus, key.ResponseCode)),
            new("response_flags", key.Flags.ToLabel()),
            new("connection_security_policy", key.MutualTls ? "mutual_tls" : "none"),
        ];
    }

    // Istio leaves it empty for HTTP (the label is then absent in Prometheus). A gRPC call whose status was not seen gets,
    // as Envoy's Grpc::Common::getGrpcStatus, the status its HTTP code maps to (a mesh failure's 503 is UNAVAILABLE, a
    // denial's 403 PERMISSION_DENIED, a call cut short after its 200 UNKNOWN); only a call with no code at all stays empty.
    private static string GrpcStatusLabel(bool grpc, int status, int responseCode) =>
        !grpc ? string.Empty
        : status >= 0 ? status.ToString(CultureInfo.InvariantCulture)
        : responseCode > 0 ? HttpToGrpcStatus(responseCode).ToString(CultureInfo.InvariantCulture)
        : string.Empty;

    /// <summary>Envoy's HTTP → gRPC status mapping (grpc/status.cc httpToGrpcStatus), for a gRPC call answered without a grpc-status.</summary>
    internal static int HttpToGrpcStatus(int httpStatus) => httpStatus switch
    {
        400 => 13, // INTERNAL
        401 => 16, // UNAUTHENTICATED
        403 => 7, // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED
        429 or 502 or 503 or 504 => 14, // UNAVAILABLE
        _ => 2, // UNKNOWN
    };

    /// <summary>The short name and namespace of <c>name.namespace.svc.&lt;domain&gt;</c>; other hosts: the first label and <c>unknown</c>.</summary>
    internal static (string Name, string Namespace) SplitServiceHost(string host)
    {
        var parts = host.Split('.');
        if (parts.Length >= 3 && parts[2] == "svc" && LabelRules.IsDnsLabel(parts[0]) && LabelRules.IsDnsLabel(parts[1]))
        {
            return (parts[0], parts[1]);
        }

        return (parts[0].Length > 0 ? parts[0] : Unknown, Unknown);
    }

    // ServiceName: null for a mesh service (its name is the host's first label); else the cluster Istio names (RecordNonMesh).
    private readonly record struct SourceKey(string ServiceHost, EndpointWorkload? Peer, string? UpstreamPrincipal, bool Grpc, int ResponseCode, int GrpcStatus, ResponseFlags Flags, string? ServiceName = null);

    private readonly record struct DestinationKey(string? Peer, bool MutualTls, bool Grpc, int ResponseCode, int GrpcStatus, ResponseFlags Flags);

    /// <summary>This workload's own label values, from <see cref="ServiceMeshOptions"/> (Istio takes them from node metadata).</summary>
    internal sealed record LocalWorkload(
        string Workload,
        string Namespace,
        string Principal,
        string App,
        string Version,
        string CanonicalService,
        string CanonicalRevision,
        string Cluster,
        string ServiceHost,
        string ServiceName)
    {
        public static LocalWorkload From(ServiceMeshOptions options)
        {
            var labels = options.Labels;
            string? Label(string name) => labels.TryGetValue(name, out var value) && value.Length > 0 ? value : null;
            var workload = options.Telemetry.Workload ?? options.Service ?? Unknown;
            var app = Label("app") ?? options.Service ?? Unknown;
            var account = options.ServiceAccount ?? options.Service;

            // The URI SAN of this workload's certificate: issued only in secure mode (an https:// control plane).
            var principal = options.ControlPlane.IsSecure && account is not null
                ? $"spiffe://{options.Identity.TrustDomain}/ns/{options.Namespace}/sa/{account}"
                : Unknown;

            // As Istio's injector fills the canonical labels; "app" is the registration's (the service name when unset).
            var registered = labels.AsReadOnly();
            var canonicalService = Mesh.Xds.Wire.EndpointWorkloadMetadata.CanonicalService(registered) ?? options.Service ?? workload;
            var canonicalRevision = Mesh.Xds.Wire.EndpointWorkloadMetadata.CanonicalRevision(registered);
            var serviceName = options.Service ?? canonicalService;
            var serviceHost = options.Service is { } service ? $"{service}.{options.Namespace}.svc.{options.ClusterDomain}" : canonicalService;
            return new LocalWorkload(workload, options.Namespace, principal, app, Label("version") ?? Unknown, canonicalService, canonicalRevision, options.Telemetry.ClusterId, serviceHost, serviceName);
        }
    }
}
