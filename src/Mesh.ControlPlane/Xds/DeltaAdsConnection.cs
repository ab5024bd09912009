using System.Globalization;
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
internal sealed partial class DeltaAdsConnection : AdsStream
{
    // Responses of one type a client has not answered yet; an ACK answers its nonce and every older one.
    private const int MaxNoncesInFlight = 32;
    private const string Wildcard = "*";

    private readonly Dictionary<string, TypeState> _types = new(StringComparer.Ordinal);

    // Convergence to the ACK (mesh_proxy_ack_convergence_time): the config change a wake-up push started from; measured when every
    // response sent since is ACKed. Touched only by the stream's single loop.
    private long _convergenceStart;
    private long _nonce;

    public DeltaAdsConnection(
        long id, string peer, XdsPublisher publisher, TimeProvider time, ILogger logger, string? identity = null, AdsLimits? limits = null,
        ClientCertificateInfo? certificate = null, ControlPlaneMetrics? metrics = null)
        : base(new AdsClientSession("delta", id, peer, publisher, time, logger, identity, limits, certificate, metrics))
    {
    }

    /// <summary>Runs the stream until the client ends it or <paramref name="cancellationToken"/> fires; throws RESOURCE_EXHAUSTED past a limit.</summary>
    public Task RunAsync(IAsyncStreamReader<DeltaDiscoveryRequest> requests, IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(responses);
        return Session.RunAsync(requests, "DeltaDiscoveryRequest", token => PushAllAsync(responses, token), (request, token) => HandleAsync(request, responses, token), cancellationToken);
    }

    /// <summary>What /debug/clients shows: subscriptions (<c>*</c> first for a wildcard), the snapshot version last ACKed per type, NACKs.</summary>
    public ClientInfo Describe() => Session.Describe(_types, t => t.Wildcard, t => t.Names, t => t.AckedVersion);

    /// <summary>Pushes what changed in the current snapshot for every type (make-before-break, xds_protocol "Eventual consistency considerations": CDS, EDS, LDS, RDS).</summary>
    private async Task PushAllAsync(IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var changedAt = Publisher.Current.ChangedAt;
        var sent = false;
        foreach (var typeUrl in TypeUrls.PushOrder)
        {
            sent |= await PushAsync(typeUrl, [], requested: false, responses, cancellationToken);
        }

        // pilot_proxy_convergence_time as istiod records it: the change's push written to this client, whatever it answers.
        if (sent && changedAt != 0)
        {
            Metrics?.Pushed(Session.Time.GetElapsedTime(changedAt));
        }

        // mesh_proxy_ack_convergence_time: measured from the oldest change this client has not yet ACKed all of.
        if (sent && _convergenceStart == 0)
        {
            _convergenceStart = changedAt;
        }
    }

    private async Task HandleAsync(DeltaDiscoveryRequest request, IServerStreamWriter<DeltaDiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var typeUrl = request.TypeUrl;
        if (!Session.Accept(request.Node, typeUrl))
        {
            return;
        }

        Session.CheckNames(typeUrl, request.ResourceNamesSubscribe, "a request's resource_names_subscribe");
        Session.CheckNames(typeUrl, request.ResourceNamesUnsubscribe, "a request's resource_names_unsubscribe");
        Session.CheckNames(typeUrl, request.InitialResourceVersions.Keys, "a request's initial_resource_versions");
        if (request.InitialResourceVersions.Values.FirstOrDefault(v => v.Length > AdsClientSession.MaxResourceNameLength) is { } version)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"a request's initial_resource_versions holds a version of {version.Length.ToString(CultureInfo.InvariantCulture)} characters; versions are at most {AdsClientSession.MaxResourceNameLength.ToString(CultureInfo.InvariantCulture)}"));
        }

        HashSet<string> forced;
        bool respond;
        lock (Session.Gate)
        {
            var isNew = !_types.TryGetValue(typeUrl, out var state);
            state ??= _types[typeUrl] = new TypeState();
            Answer(typeUrl, state, request);
            (forced, respond) = Subscribe(state, request, isNew);
            if (request.ResourceNamesSubscribe.Count > 0)
            {
                Session.CheckNames(typeUrl, state.Names, "the subscription of this delta ADS stream");
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
            Metrics?.Rejected(typeUrl);
            if (index >= 0)
            {
                Session.RecordNack(typeUrl, state.InFlight[index].Version, request.ResponseNonce, request.ErrorDetail.Message);

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
            if (Logger.IsEnabled(LogLevel.Debug))
            {
                var nonce = AdsNode.Printable(request.ResponseNonce);
                LogUnknownNonce(Logger, ClientId, typeUrl, nonce);
            }

            return;
        }

        state.InFlight.RemoveRange(0, index + 1);
        if (_convergenceStart != 0 && _types.Values.All(t => t.InFlight.Count == 0))
        {
            Metrics?.Converged(Session.Time.GetElapsedTime(_convergenceStart));
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
        var started = Session.Time.GetTimestamp();
        DeltaDiscoveryResponse response;
        lock (Session.Gate)
        {
            if (!_types.TryGetValue(typeUrl, out var state))
            {
                return false;
            }

            var snapshot = Publisher.Current;
            if (!requested && ReferenceEquals(snapshot, state.ComputedFrom))
            {
                return false;
            }

            // A wake-up for a client diffed against the previous snapshot looks at what changed only: an endpoint change
            // costs a lookup per changed name, not one per resource the client has (a wildcard client has them all).
            var from = state.ComputedFrom;
            state.ComputedFrom = snapshot;
            response = !requested && from is not null && snapshot.Changes is { ScopesChanged: false } since && since.PreviousVersion == from.Version
                && !(typeUrl == TypeUrls.Listener && since.ListenerTargetsChanged)
                ? DiffChanged(typeUrl, state, since, snapshot)
                : Diff(typeUrl, state, forced, snapshot);
            // Nothing to send, except to a wildcard client that has nothing yet: on an empty mesh it would otherwise never
            // learn that the set is empty rather than not sent yet (and never reach its first snapshot).
            var emptyAnswer = requested && state.Wildcard && !state.Answered && state.Versions.Count == 0;
            if (response.Resources.Count == 0 && response.RemovedResources.Count == 0 && !emptyAnswer)
            {
                return false;
            }

            response.Nonce = Interlocked.Increment(ref _nonce).ToString(CultureInfo.InvariantCulture);
            state.Answered = true;
            state.InFlight.Add((response.Nonce, response.SystemVersionInfo));
            if (state.InFlight.Count > MaxNoncesInFlight)
            {
                state.InFlight.RemoveAt(0);
            }
        }

        LogSend(Logger, ClientId, typeUrl, response.SystemVersionInfo, response.Nonce, response.Resources.Count, response.RemovedResources.Count);
        await AdsResponseWriter.WriteAsync(responses, response, typeUrl, Session.Limits, Session.Time, Metrics, Logger, ClientId, Session.Peer, cancellationToken);

        Metrics?.Pushed(typeUrl, Session.Time.GetElapsedTime(started));
        return true;
    }

    /// <summary>
    /// The response that brings the client from what it has (<see cref="TypeState.Versions"/>) to what it should have, and
    /// records it as had. Versions are recorded when sent, not when ACKed: a NACKed resource is not sent again until it
    /// changes (as the state-of-the-world stream does not resend a NACKed response).
    /// </summary>
    private DeltaDiscoveryResponse Diff(string typeUrl, TypeState state, HashSet<string> forced, XdsSnapshot snapshot)
    {
        var response = NewResponse(typeUrl, snapshot);

        var removed = new HashSet<string>(StringComparer.Ordinal);
        var desired = View.Select(typeUrl, state.Wildcard, state.Names, snapshot);
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

    /// <summary>
    /// What <see cref="Diff"/> gives for a client whose last diff was against the snapshot <paramref name="changes"/> are
    /// relative to (Sidecar scopes and listener targets unchanged): only the changed and removed names, and the inbound
    /// listeners the client subscribes to (not listed, see <see cref="XdsChanges.InboundListenersUnknown"/>), are looked at.
    /// </summary>
    private DeltaDiscoveryResponse DiffChanged(string typeUrl, TypeState state, XdsChanges changes, XdsSnapshot snapshot)
    {
        var response = NewResponse(typeUrl, snapshot);
        var names = new SortedSet<string>(changes.Changed(typeUrl), StringComparer.Ordinal);
        names.UnionWith(changes.Removed(typeUrl));
        if (typeUrl == TypeUrls.Listener && changes.InboundListenersUnknown)
        {
            names.UnionWith(state.Names.Where(IsInbound));
        }

        foreach (var name in names)
        {
            // The wildcard covers every outbound listener and every cluster, assignment and route configuration; inbound
            // listeners only by name.
            if (!state.Names.Contains(name) && !(state.Wildcard && !(typeUrl == TypeUrls.Listener && IsInbound(name))))
            {
                continue;
            }

            if (View.Resolve(typeUrl, name, snapshot) is { } resource)
            {
                if (!state.Versions.TryGetValue(name, out var version) || version != resource.Version)
                {
                    response.Resources.Add(new Resource { Name = name, Version = resource.Version, Resource_ = resource.Resource });
                    state.Versions[name] = resource.Version;
                    state.Absent.Remove(name);
                }
            }
            else if (state.Versions.Remove(name))
            {
                response.RemovedResources.Add(name);
                if (state.Names.Contains(name))
                {
                    state.Absent.Add(name);
                }
            }
            else if (state.Names.Contains(name) && state.Absent.Add(name))
            {
                response.RemovedResources.Add(name);
            }
        }

        return response;

        static bool IsInbound(string name) => name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal);
    }

    private static DeltaDiscoveryResponse NewResponse(string typeUrl, XdsSnapshot snapshot) => new()
    {
        SystemVersionInfo = snapshot.VersionInfo,
        TypeUrl = typeUrl,
        ControlPlane = new Mesh.Xds.Envoy.Config.Core.V3.ControlPlane { Identifier = "mesh-control-plane" },
    };

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

        /// <summary>Whether a response of this type was sent on this stream.</summary>
        public bool Answered { get; set; }

        /// <summary>The snapshot the last diff was computed against.</summary>
        public XdsSnapshot? ComputedFrom { get; set; }
    }



    [LoggerMessage(EventId = 44, EventName = "DeltaAdsUnknownNonce", Level = LogLevel.Debug, Message = "Delta ADS client {ClientId}: {TypeUrl} request answers nonce {Nonce}, which is not awaiting an answer; its subscription changes still apply")]
    private static partial void LogUnknownNonce(ILogger logger, string clientId, string typeUrl, string nonce);

    [LoggerMessage(EventId = 46, EventName = "DeltaAdsSend", Level = LogLevel.Debug, Message = "Delta ADS client {ClientId}: sending {TypeUrl} version {Version} nonce {Nonce} with {Count} resources and {Removed} removed")]
    private static partial void LogSend(ILogger logger, string clientId, string typeUrl, string version, string nonce, int count, int removed);
}
