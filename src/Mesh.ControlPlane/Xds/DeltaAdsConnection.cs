using System.Collections.Immutable;
using System.Globalization;
using System.Threading.Channels;
using Grpc.Core;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// One incremental (delta) ADS stream: per type, the names the client subscribed to (or the wildcard) and the version of
/// each resource it has; every response carries only what changed and what is gone. Like <see cref="AdsConnection"/>, a
/// single loop handles requests and snapshot wake-ups, so there is one writer per stream and wake-ups coalesce (a slow
/// client gets the newest state, never a backlog).
/// </summary>
/// <remarks>
/// Which resources the client gets is <see cref="AdsClientView"/>'s rule, the same as for the state-of-the-world stream,
/// so both serve the same bytes (inbound listeners only to the identity they belong to). Protocol references below are to
/// envoy's <c>api-docs/xds_protocol.rst</c> ("Incremental xDS" and the sections it links).
/// </remarks>
internal sealed partial class DeltaAdsConnection
{
    private const int MaxNacksKept = 20;

    // Responses of one type a client has not answered yet; an ACK answers its nonce and every older one.
    private const int MaxNoncesInFlight = 32;
    private const string Wildcard = "*";

    private readonly XdsPublisher _publisher;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, TypeState> _types = new(StringComparer.Ordinal);
    private readonly List<NackInfo> _nacks = [];
    private readonly AdsLimits _limits;
    private readonly ControlPlaneMetrics? _metrics;

    // Convergence (pilot_proxy_convergence_time): the config change a wake-up push started from; measured when every
    // response sent since is ACKed. Touched only by the stream's single loop.
    private long _convergenceStart;
    private string? _versionLabel;
    private long _nonce;

    // Who the client is and what it may get; replaced once, when its node arrives.
    private AdsClientView _view;

    public DeltaAdsConnection(
        long id, string peer, XdsPublisher publisher, TimeProvider time, ILogger logger, string? identity = null, AdsLimits? limits = null,
        ClientCertificateInfo? certificate = null, ControlPlaneMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        Id = id;
        Peer = peer;
        Identity = identity;
        Certificate = certificate;
        _publisher = publisher;
        _time = time;
        _logger = logger;
        _limits = limits ?? AdsLimits.Default;
        _metrics = metrics;
        ConnectedAt = time.GetUtcNow();
        _view = AdsClientView.Unknown($"delta-stream-{id.ToString(CultureInfo.InvariantCulture)}", identity, logger);
    }

    public long Id { get; }

    public string Peer { get; }

    public DateTimeOffset ConnectedAt { get; }

    /// <summary>The client certificate's SPIFFE ID; null on the plaintext port.</summary>
    public string? Identity { get; }

    /// <summary>The client certificate the stream was opened with; null on the plaintext port.</summary>
    public ClientCertificateInfo? Certificate { get; }

    private string ClientId => _view.ClientId;

    /// <summary>Runs the stream until the client ends it or <paramref name="cancellationToken"/> fires; throws RESOURCE_EXHAUSTED past a limit.</summary>
    public async Task RunAsync(IAsyncStreamReader<DeltaDiscoveryRequest> requests, IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(responses);
        var loop = new AdsStreamLoop<DeltaDiscoveryRequest>(_limits.MaxPendingRequests, "DeltaDiscoveryRequest");
        using var subscription = _publisher.Subscribe(loop.Wake);
        RpcException? failure;
        try
        {
            failure = await loop.RunAsync(requests, token => PushAllAsync(responses, token), (request, token) => HandleAsync(request, responses, token), ex => LogStreamClosed(_logger, ClientId, ex), cancellationToken);
        }
        finally
        {
            if (_versionLabel is not null)
            {
                _metrics?.ClientDisconnected(_versionLabel);
            }
        }

        if (failure is not null)
        {
            LogStreamFailed(_logger, ClientId, failure.StatusCode, failure.Status.Detail);
            throw failure;
        }
    }

    /// <summary>What /debug/clients shows: subscriptions (<c>*</c> first for a wildcard), the snapshot version last ACKed per type, NACKs.</summary>
    public ClientInfo Describe()
    {
        lock (_gate)
        {
            return new ClientInfo(
                ClientId,
                Peer,
                ConnectedAt,
                _view.Namespace,
                Identity,
                Certificate?.Serial,
                Certificate?.NotAfter,
                _types.ToDictionary(
                    t => t.Key,
                    t => (IReadOnlyList<string>)(t.Value.Wildcard ? [Wildcard, .. t.Value.Names.Order(StringComparer.Ordinal)] : [.. t.Value.Names.Order(StringComparer.Ordinal)]),
                    StringComparer.Ordinal),
                _types.Where(t => t.Value.AckedVersion is not null).ToDictionary(t => t.Key, t => t.Value.AckedVersion!, StringComparer.Ordinal),
                [.. _nacks]);
        }
    }

    /// <summary>Pushes what changed in the current snapshot for every type (make-before-break, xds_protocol "Eventual consistency considerations": CDS, EDS, LDS, RDS).</summary>
    private async Task PushAllAsync(IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var changedAt = _publisher.Current.ChangedAt;
        var sent = false;
        foreach (var typeUrl in TypeUrls.PushOrder)
        {
            sent |= await PushAsync(typeUrl, [], requested: false, responses, cancellationToken);
        }

        // Measured from the oldest change this client has not yet ACKed all of.
        if (sent && _convergenceStart == 0)
        {
            _convergenceStart = changedAt;
        }
    }

    private async Task HandleAsync(DeltaDiscoveryRequest request, IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        if (request.Node is { } node && _view.NodeId.Length == 0)
        {
            lock (_gate)
            {
                _view = AdsClientView.For(node, Identity, _logger);
            }

            if (_versionLabel is null && _metrics is not null)
            {
                _versionLabel = _metrics.ClientConnected(AdsNode.VersionOf(node));
            }

            LogConnected(_logger, ClientId, Peer, _view.Namespace);
        }

        var typeUrl = request.TypeUrl;
        if (!TypeUrls.IsKnown(typeUrl))
        {
            LogUnknownType(_logger, ClientId, AdsNode.Printable(typeUrl));
            return;
        }

        var limit = _limits.MaxResourceNamesPerType;
        if (request.ResourceNamesSubscribe.Count > limit)
        {
            throw TooManyNames($"the {typeUrl} subscription of this delta ADS stream would hold {request.ResourceNamesSubscribe.Count.ToString(CultureInfo.InvariantCulture)} names");
        }

        if (request.InitialResourceVersions.Count > limit)
        {
            throw TooManyNames($"a {typeUrl} request lists {request.InitialResourceVersions.Count.ToString(CultureInfo.InvariantCulture)} initial_resource_versions");
        }

        HashSet<string> forced;
        bool respond;
        lock (_gate)
        {
            var isNew = !_types.TryGetValue(typeUrl, out var state);
            state ??= _types[typeUrl] = new TypeState();
            Answer(typeUrl, state, request);
            (forced, respond) = Subscribe(state, request, isNew);
            if (state.Names.Count > limit)
            {
                throw TooManyNames($"the {typeUrl} subscription of this delta ADS stream would hold {state.Names.Count.ToString(CultureInfo.InvariantCulture)} names");
            }
        }

        // A request that only unsubscribes gets no response (xds_protocol "Unsubscribing from Resources").
        if (respond || forced.Count > 0)
        {
            await PushAsync(typeUrl, forced, requested: true, responses, cancellationToken);
        }
    }

    /// <summary>The ACK or NACK part of a request (by <c>response_nonce</c> and <c>error_detail</c>).</summary>
    private void Answer(string typeUrl, TypeState state, DeltaDiscoveryRequest request)
    {
        if (request.ResponseNonce.Length == 0)
        {
            return;
        }

        var index = state.InFlight.FindIndex(n => n.Nonce == request.ResponseNonce);
        if (request.ErrorDetail is not null)
        {
            // Counted even for a nonce no longer awaited, as the state-of-the-world stream counts a superseded NACK.
            _metrics?.Rejected(typeUrl);
            if (index >= 0)
            {
                // Client-supplied text: bounded and without control characters before it reaches logs or the admin API.
                var nack = new NackInfo(typeUrl, state.InFlight[index].Version, AdsNode.Printable(request.ResponseNonce), AdsNode.Printable(request.ErrorDetail.Message), _time.GetUtcNow());
                _nacks.Add(nack);
                if (_nacks.Count > MaxNacksKept)
                {
                    _nacks.RemoveAt(0);
                }

                LogNack(_logger, ClientId, typeUrl, nack.Version, nack.Nonce, nack.Message);

                // A rejected change never converges on this client: it is not measured.
                _convergenceStart = 0;
            }
        }
        else if (index >= 0)
        {
            state.AckedVersion = state.InFlight[index].Version;
        }

        if (index < 0)
        {
            if (_logger.IsEnabled(LogLevel.Debug))
            {
                var nonce = AdsNode.Printable(request.ResponseNonce);
                LogUnknownNonce(_logger, ClientId, typeUrl, nonce);
            }

            return;
        }

        state.InFlight.RemoveRange(0, index + 1);
        if (_convergenceStart != 0 && _types.Values.All(t => t.InFlight.Count == 0))
        {
            _metrics?.Converged(_time.GetElapsedTime(_convergenceStart));
            _convergenceStart = 0;
        }
    }

    /// <summary>
    /// Applies the request's subscription changes, whatever its nonce ("the server must honor changes to the subscription
    /// state even if the nonce is stale"). Returns the names the response must carry (in <c>resources</c> or
    /// <c>removed_resources</c>) and whether the subscription grew, so that a response may be due.
    /// </summary>
    private static (HashSet<string> Forced, bool Respond) Subscribe(TypeState state, DeltaDiscoveryRequest request, bool isNew)
    {
        var forced = new HashSet<string>(StringComparer.Ordinal);
        var respond = false;
        if (isNew)
        {
            // Legacy wildcard: a first request of a type that subscribes to nothing and unsubscribes nothing means "*"
            // (xds_protocol "How the client specifies what resources to return").
            if (request.ResourceNamesSubscribe.Count == 0 && request.ResourceNamesUnsubscribe.Count == 0)
            {
                state.Wildcard = true;
            }

            // A reconnecting client's resources: those it has at the current version are not sent again.
            foreach (var (name, version) in request.InitialResourceVersions)
            {
                state.Versions[name] = version;
            }

            respond = true;
        }

        foreach (var name in request.ResourceNamesSubscribe)
        {
            if (name == Wildcard)
            {
                respond |= !state.Wildcard;
                state.Wildcard = true;
                continue;
            }

            state.Names.Add(name);

            // Sent even when the client should have it: it may have "forgotten" it (xds_protocol "Subscribing to
            // Resources"); a reconnecting client's initial_resource_versions say what it really has.
            if (!request.InitialResourceVersions.ContainsKey(name))
            {
                forced.Add(name);
            }
        }

        var wildcardRemoved = false;
        foreach (var name in request.ResourceNamesUnsubscribe)
        {
            if (name == Wildcard)
            {
                wildcardRemoved |= state.Wildcard;
                state.Wildcard = false;
                continue;
            }

            // A name the client was not subscribed to is a phantom unsubscribe: ignored.
            if (!state.Names.Remove(name))
            {
                continue;
            }

            state.Absent.Remove(name);
            if (state.Wildcard)
            {
                // Under "*" the client cannot tell whether the wildcard still covers the name: the response says, with the
                // resource or its removal (xds_protocol "Unsubscribing from Resources").
                forced.Add(name);
            }
            else
            {
                state.Versions.Remove(name);
                forced.Remove(name);
            }
        }

        // Without the wildcard only named resources are tracked: the client drops the others itself (no response due).
        if (!state.Wildcard && (wildcardRemoved || isNew))
        {
            foreach (var name in state.Versions.Keys.Where(n => !state.Names.Contains(n)).ToList())
            {
                state.Versions.Remove(name);
            }
        }

        return (forced, respond);
    }

    /// <summary>
    /// Sends what changed for <paramref name="typeUrl"/> since what the client has, plus <paramref name="forced"/>; true when
    /// a response was written. A wake-up (<paramref name="requested"/> false) with an unchanged snapshot costs nothing.
    /// </summary>
    private async Task<bool> PushAsync(string typeUrl, HashSet<string> forced, bool requested, IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        DeltaDiscoveryResponse response;
        lock (_gate)
        {
            if (!_types.TryGetValue(typeUrl, out var state))
            {
                return false;
            }

            var snapshot = _publisher.Current;
            if (!requested && ReferenceEquals(snapshot, state.ComputedFrom))
            {
                return false;
            }

            state.ComputedFrom = snapshot;
            response = Diff(typeUrl, state, forced, snapshot);
            if (response.Resources.Count == 0 && response.RemovedResources.Count == 0)
            {
                return false;
            }

            response.Nonce = Interlocked.Increment(ref _nonce).ToString(CultureInfo.InvariantCulture);
            state.InFlight.Add((response.Nonce, response.SystemVersionInfo));
            if (state.InFlight.Count > MaxNoncesInFlight)
            {
                state.InFlight.RemoveAt(0);
            }
        }

        LogSend(_logger, ClientId, typeUrl, response.SystemVersionInfo, response.Nonce, response.Resources.Count, response.RemovedResources.Count);
        await AdsResponseWriter.WriteAsync(responses, response, typeUrl, _limits, _time, _metrics, _logger, ClientId, Peer, cancellationToken);

        _metrics?.Pushed(typeUrl, _time.GetElapsedTime(started));
        return true;
    }

    /// <summary>
    /// The response that brings the client from what it has (<see cref="TypeState.Versions"/>) to what it should have, and
    /// records it as had. Versions are recorded when sent, not when ACKed: a NACKed resource is not sent again until it
    /// changes (as the state-of-the-world stream does not resend a NACKed response).
    /// </summary>
    private DeltaDiscoveryResponse Diff(string typeUrl, TypeState state, HashSet<string> forced, XdsSnapshot snapshot)
    {
        var response = new DeltaDiscoveryResponse
        {
            SystemVersionInfo = snapshot.VersionInfo,
            TypeUrl = typeUrl,
            ControlPlane = new Mesh.Xds.Envoy.Config.Core.V3.ControlPlane { Identifier = "mesh-control-plane" },
        };

        var removed = new HashSet<string>(StringComparer.Ordinal);
        var desired = Desired(typeUrl, state, snapshot);
        var desiredNames = new HashSet<string>(desired.Length, StringComparer.Ordinal);
        foreach (var resource in desired)
        {
            if (!desiredNames.Add(resource.Name))
            {
                continue;
            }

            if (forced.Contains(resource.Name) || !state.Versions.TryGetValue(resource.Name, out var version) || version != resource.Version)
            {
                response.Resources.Add(new Resource { Name = resource.Name, Version = resource.Version, Resource_ = resource.Resource });
                state.Versions[resource.Name] = resource.Version;
                state.Absent.Remove(resource.Name);
            }
        }

        // Deleted (or no longer this client's): the client has it and must drop it (xds_protocol "Deleting Resources").
        foreach (var name in state.Versions.Keys.Where(n => !desiredNames.Contains(n)).ToList())
        {
            Remove(name);
        }

        // Subscribed and not existing: "the server will send ... that resource's name in the removed_resources field"
        // (xds_protocol "Knowing When a Requested Resource Does Not Exist"), once, and again when subscribed again.
        foreach (var name in state.Names)
        {
            if (!desiredNames.Contains(name) && (!state.Absent.Contains(name) || forced.Contains(name)) && removed.Add(name))
            {
                response.RemovedResources.Add(name);
                state.Absent.Add(name);
            }
        }

        // Unsubscribed under "*" and not covered by it.
        foreach (var name in forced)
        {
            if (!desiredNames.Contains(name) && !state.Names.Contains(name) && removed.Add(name))
            {
                response.RemovedResources.Add(name);
            }
        }

        return response;

        void Remove(string name)
        {
            state.Versions.Remove(name);
            removed.Add(name);
            response.RemovedResources.Add(name);
            if (state.Names.Contains(name))
            {
                state.Absent.Add(name);
            }
        }
    }

    /// <summary>What the client should have of <paramref name="typeUrl"/> now: <see cref="AdsClientView.Select"/>, as for the state-of-the-world stream.</summary>
    private ImmutableArray<XdsResource> Desired(string typeUrl, TypeState state, XdsSnapshot snapshot)
    {
        var selected = _view.Select(typeUrl, state.Wildcard, state.Names, snapshot);
        if (!state.Wildcard || state.Names.Count == 0 || typeUrl != TypeUrls.Listener)
        {
            return selected;
        }

        // "*" plus a name is both subscriptions: a listener named in another spelling ("orders" for
        // "orders.default.svc.cluster.local:80") stays served, where the wildcard lists canonical names only.
        var have = selected.Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
        var builder = selected.ToBuilder();
        foreach (var name in state.Names.Order(StringComparer.Ordinal))
        {
            if (!have.Contains(name) && _view.Resolve(typeUrl, name, snapshot) is { } resource)
            {
                builder.Add(resource);
            }
        }

        return builder.ToImmutable();
    }

    private RpcException TooManyNames(string what) =>
        new(new Status(StatusCode.ResourceExhausted,
            $"{what}; an ADS stream may subscribe to at most {_limits.MaxResourceNamesPerType.ToString(CultureInfo.InvariantCulture)} per type (ControlPlane:AdsMaxResourceNamesPerType)"));

    private sealed class TypeState
    {
        /// <summary>Subscribed to "*" (explicitly or by the legacy empty first request).</summary>
        public bool Wildcard { get; set; }

        /// <summary>Names subscribed explicitly ("*" excluded).</summary>
        public HashSet<string> Names { get; } = new(StringComparer.Ordinal);

        /// <summary>The resources the client has, by name: the version last sent, or from <c>initial_resource_versions</c>.</summary>
        public Dictionary<string, string> Versions { get; } = new(StringComparer.Ordinal);

        /// <summary>Subscribed names the client has been told do not exist.</summary>
        public HashSet<string> Absent { get; } = new(StringComparer.Ordinal);

        /// <summary>Responses not answered yet, oldest first: nonce and the snapshot version they were built from.</summary>
        public List<(string Nonce, string Version)> InFlight { get; } = [];

        public string? AckedVersion { get; set; }

        /// <summary>The snapshot the last diff was computed against.</summary>
        public XdsSnapshot? ComputedFrom { get; set; }
    }

    [LoggerMessage(EventId = 40, EventName = "DeltaAdsStreamFailed", Level = LogLevel.Warning, Message = "Delta ADS stream of {ClientId} ended with {StatusCode}: {Detail}")]
    private static partial void LogStreamFailed(ILogger logger, string clientId, StatusCode statusCode, string detail);

    [LoggerMessage(EventId = 41, EventName = "DeltaAdsConnected", Level = LogLevel.Information, Message = "Delta ADS client {ClientId} connected from {Peer} (namespace {Namespace})")]
    private static partial void LogConnected(ILogger logger, string clientId, string peer, string @namespace);

    [LoggerMessage(EventId = 42, EventName = "DeltaAdsStreamClosed", Level = LogLevel.Debug, Message = "Delta ADS stream of {ClientId} closed")]
    private static partial void LogStreamClosed(ILogger logger, string clientId, Exception exception);

    [LoggerMessage(EventId = 43, EventName = "DeltaAdsUnknownType", Level = LogLevel.Warning, Message = "Delta ADS client {ClientId} asked for unsupported type {TypeUrl}")]
    private static partial void LogUnknownType(ILogger logger, string clientId, string typeUrl);

    [LoggerMessage(EventId = 44, EventName = "DeltaAdsUnknownNonce", Level = LogLevel.Debug, Message = "Delta ADS client {ClientId}: {TypeUrl} request answers nonce {Nonce}, which is not awaiting an answer; its subscription changes still apply")]
    private static partial void LogUnknownNonce(ILogger logger, string clientId, string typeUrl, string nonce);

    [LoggerMessage(EventId = 45, EventName = "DeltaAdsNack", Level = LogLevel.Warning, Message = "Delta ADS client {ClientId} NACKed {TypeUrl} version {Version} nonce {Nonce}: {Message}")]
    private static partial void LogNack(ILogger logger, string clientId, string typeUrl, string version, string nonce, string message);

    [LoggerMessage(EventId = 46, EventName = "DeltaAdsSend", Level = LogLevel.Debug, Message = "Delta ADS client {ClientId}: sending {TypeUrl} version {Version} nonce {Nonce} with {Count} resources and {Removed} removed")]
    private static partial void LogSend(ILogger logger, string clientId, string typeUrl, string version, string nonce, int count, int removed);
}
