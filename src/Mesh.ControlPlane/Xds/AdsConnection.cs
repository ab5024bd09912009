using System.Globalization;
using Grpc.Core;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// One state-of-the-world ADS stream. A single loop handles requests and snapshot changes, so
/// there is exactly one writer per stream and no locking of per-type state against itself.
/// </summary>
/// <remarks>
/// <see cref="Identity"/> is the SPIFFE ID of the client certificate (secure port) or null (plaintext port): inbound
/// listeners are served only to the identity they belong to, so a null identity never receives one.
/// </remarks>
internal sealed partial class AdsConnection : AdsStream
{
    private const string Wildcard = "*";

    private readonly Dictionary<string, TypeState> _types = new(StringComparer.Ordinal);

    // Convergence to the ACK (mesh_proxy_ack_convergence_time): the config change a snapshot push started from, and the types sent
    // since that this client has not ACKed yet. Touched only by the stream's single loop.
    private readonly HashSet<string> _awaitingAck = new(StringComparer.Ordinal);
    private long _convergenceStart;
    private long _nonce;

    public AdsConnection(
        long id, string peer, XdsPublisher publisher, TimeProvider time, ILogger logger, string? identity = null, AdsLimits? limits = null,
        ClientCertificateInfo? certificate = null, ControlPlaneMetrics? metrics = null)
        : base(new AdsClientSession("sotw", id, peer, publisher, time, logger, identity, limits, certificate, metrics))
    {
    }

    /// <summary>Runs the stream until the client ends it or <paramref name="cancellationToken"/> fires; throws RESOURCE_EXHAUSTED past a limit.</summary>
    public Task RunAsync(IAsyncStreamReader<DiscoveryRequest> requests, IServerStreamWriter<DiscoveryResponse> responses, CancellationToken cancellationToken) =>
        Session.RunAsync(requests, "DiscoveryRequest", token => PushAllAsync(responses, token), (request, token) => HandleAsync(request, responses, token), cancellationToken);

    public ClientInfo Describe() => Session.Describe(_types, t => t.Wildcard, t => t.Names, t => t.AckedVersion);

    /// <summary>Pushes what changed in the current snapshot for every type.</summary>
    private async Task PushAllAsync(IServerStreamWriter<DiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var changedAt = Publisher.Current.ChangedAt;
        var sent = false;
        foreach (var typeUrl in TypeUrls.PushOrder)
        {
            sent |= await PushAsync(typeUrl, forceAll: false, added: null, responses, cancellationToken);
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

    private async Task HandleAsync(DiscoveryRequest request, IServerStreamWriter<DiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var typeUrl = request.TypeUrl;
        if (!Session.Accept(request.Node, typeUrl))
        {
            return;
        }

        Session.CheckNames(typeUrl, request.ResourceNames, "a request's resource_names");

        bool forceAll;
        List<string> added;
        lock (Session.Gate)
        {
            var isNew = !_types.TryGetValue(typeUrl, out var state);
            state ??= _types[typeUrl] = new TypeState();
            if (!isNew && request.ResponseNonce.Length > 0 && request.ResponseNonce != state.LastNonce)
            {
                // A NACK of a superseded response still says the client rejected config: counted, as istiod counts it
                // before it looks at the nonce (a bad push quickly followed by a fix must not hide the rejection).
                if (request.ErrorDetail is not null)
                {
                    Metrics?.Rejected(typeUrl);
                }

                // Superseded by a newer response; the client will answer that one.
                if (Logger.IsEnabled(LogLevel.Debug))
                {
                    var staleNonce = AdsNode.Printable(request.ResponseNonce);
                    LogStaleNonce(Logger, ClientId, typeUrl, staleNonce, state.LastNonce ?? string.Empty);
                }

                return;
            }

            var isNack = request.ErrorDetail is not null;
            if (isNack)
            {
                // Client-supplied text: bounded and without control characters before it reaches logs or the admin API.
                Session.RecordNack(typeUrl, state.LastVersion ?? request.VersionInfo, request.ResponseNonce, request.ErrorDetail!.Message);
                Metrics?.Rejected(typeUrl);

                // A rejected change never converges on this client: it is not measured.
                _awaitingAck.Remove(typeUrl);
                _convergenceStart = 0;
            }
            else if (request.ResponseNonce.Length > 0)
            {
                state.AckedVersion = request.VersionInfo;
                if (_awaitingAck.Remove(typeUrl) && _awaitingAck.Count == 0 && _convergenceStart != 0)
                {
                    Metrics?.Converged(Session.Time.GetElapsedTime(_convergenceStart));
                    _convergenceStart = 0;
                }
            }

            var names = request.ResourceNames.Where(n => n != Wildcard).ToHashSet(StringComparer.Ordinal);
            var wildcard = request.ResourceNames.Contains(Wildcard) || (request.ResourceNames.Count == 0 && !state.EverNamed);
            state.EverNamed |= names.Count > 0;
            added = [.. names.Where(n => !state.Names.Contains(n))];
            forceAll = isNew || (wildcard && !state.Wildcard);
            foreach (var name in state.Names)
            {
                if (!names.Contains(name))
                {
                    state.Sent.Remove(name);
                }
            }

            state.Names = names;
            state.Wildcard = wildcard;
        }

        await PushAsync(typeUrl, forceAll, added, responses, cancellationToken);
    }

    /// <summary>
    /// Sends what of <paramref name="typeUrl"/> changed for this client since its last response (everything when
    /// <paramref name="forceAll"/>; the newly subscribed <paramref name="added"/> names even when unchanged, as the protocol
    /// says); true when a response was written. RDS and EDS responses carry only those resources; LDS and CDS carry the full
    /// set, and only when something in it was added, changed or removed.
    /// </summary>
    /// <remarks>
    /// Resources are compared by instance (a snapshot reuses the previous one's unchanged resources), then by version. A
    /// client at the previous snapshot is checked against that snapshot's <see cref="XdsChanges"/> only, so an endpoint
    /// change costs a lookup per changed name, not per subscribed one; otherwise (a client that skipped snapshots, a forced
    /// response) every subscribed name is compared once.
    /// </remarks>
    private async Task<bool> PushAsync(string typeUrl, bool forceAll, IReadOnlyList<string>? added, IServerStreamWriter<DiscoveryResponse> responses, CancellationToken cancellationToken)
    {
        var started = Session.Time.GetTimestamp();
        DiscoveryResponse response;
        lock (Session.Gate)
        {
            if (!_types.TryGetValue(typeUrl, out var state))
            {
                return false;
            }

            var snapshot = Publisher.Current;
            var resources = Changes(typeUrl, state, snapshot, forceAll, added ?? []);
            state.SnapshotVersion = snapshot.Version;
            if (resources is null)
            {
                return false;
            }

            response = new DiscoveryResponse
            {
                VersionInfo = snapshot.VersionInfo,
                TypeUrl = typeUrl,
                Nonce = Interlocked.Increment(ref _nonce).ToString(CultureInfo.InvariantCulture),
                ControlPlane = new Mesh.Xds.Envoy.Config.Core.V3.ControlPlane { Identifier = "mesh-control-plane" },
            };
            foreach (var resource in resources)
            {
                response.Resources.Add(resource.Resource);
            }

            state.LastNonce = response.Nonce;
            state.LastVersion = response.VersionInfo;
            _awaitingAck.Add(typeUrl);
        }

        LogSend(Logger, ClientId, typeUrl, response.VersionInfo, response.Nonce, response.Resources.Count);
        await WriteAsync(typeUrl, response, responses, cancellationToken);
        Metrics?.Pushed(typeUrl, Session.Time.GetElapsedTime(started));
        return true;
    }

    /// <summary>The resources to send and <paramref name="state"/>'s record of what the client holds updated; null when nothing is to be sent.</summary>
    private List<XdsResource>? Changes(string typeUrl, TypeState state, XdsSnapshot snapshot, bool forceAll, IReadOnlyList<string> added)
    {
        var fullSet = TypeUrls.RequiresFullSet(typeUrl);
        if (!forceAll && added.Count == 0 && state.SnapshotVersion == snapshot.Version)
        {
            return null;
        }

        var atPrevious = !forceAll && state.SnapshotVersion >= 0 && snapshot.Changes is { ScopesChanged: false } since && since.PreviousVersion == state.SnapshotVersion;
        if (fullSet)
        {
            if (forceAll || added.Count > 0 || !atPrevious || Touches(typeUrl, state, snapshot.Changes!) || InboundChanged(typeUrl, state, snapshot))
            {
                return FullSet(typeUrl, state, snapshot, sendAll: forceAll || added.Count > 0);
            }

            return null;
        }

        List<XdsResource> send;
        if (atPrevious)
        {
            send = [];
            var changes = snapshot.Changes!;
            foreach (var name in changes.Removed(typeUrl))
            {
                state.Sent.Remove(name);
            }

            foreach (var name in changes.Changed(typeUrl))
            {
                if (state.Wildcard || state.Names.Contains(name))
                {
                    Offer(typeUrl, state, snapshot, name, force: false, send);
                }
            }
        }
        else
        {
            send = Reconcile(typeUrl, state, snapshot, forceAll);
        }

        if (!forceAll && added.Count > 0)
        {
            var queued = send.Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var name in added)
            {
                if (!queued.Contains(name))
                {
                    Offer(typeUrl, state, snapshot, name, force: true, send);
                }
            }
        }

        if (send.Count == 0)
        {
            return null;
        }

        send.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return send;
    }

    /// <summary>Adds <paramref name="name"/> to <paramref name="send"/> when it exists and the client does not hold it (or <paramref name="force"/>).</summary>
    private void Offer(string typeUrl, TypeState state, XdsSnapshot snapshot, string name, bool force, List<XdsResource> send)
    {
        if (View.Resolve(typeUrl, name, snapshot) is not { } resource)
        {
            state.Sent.Remove(name);
            return;
        }

        var held = state.Sent.TryGetValue(name, out var old);
        if (force || !held || !Same(old!, resource))
        {
            send.Add(resource);
            state.Sent[name] = resource;
        }
    }

    /// <summary>RDS/EDS: every subscribed resource compared with what the client holds; the ones it lacks are returned.</summary>
    private List<XdsResource> Reconcile(string typeUrl, TypeState state, XdsSnapshot snapshot, bool sendAll)
    {
        var selected = View.Select(typeUrl, state.Wildcard, state.Names, snapshot);
        var held = new Dictionary<string, XdsResource>(selected.Length, StringComparer.Ordinal);
        var send = new List<XdsResource>();
        foreach (var resource in selected)
        {
            held[resource.Name] = resource;
            if (sendAll || !state.Sent.TryGetValue(resource.Name, out var old) || !Same(old, resource))
            {
                send.Add(resource);
            }
        }

        state.Sent = held;
        return send;
    }

    /// <summary>LDS/CDS: the full set when <paramref name="sendAll"/> or anything in it differs from what the client holds; else null.</summary>
    private List<XdsResource>? FullSet(string typeUrl, TypeState state, XdsSnapshot snapshot, bool sendAll)
    {
        var selected = View.Select(typeUrl, state.Wildcard, state.Names, snapshot);
        var held = new Dictionary<string, XdsResource>(selected.Length, StringComparer.Ordinal);
        var differs = sendAll;
        foreach (var resource in selected)
        {
            held[resource.Name] = resource;
            differs = differs || !state.Sent.TryGetValue(resource.Name, out var old) || !Same(old, resource);
        }

        // Every selected name is held with the same content; equal counts then mean nothing was removed.
        differs = differs || held.Count != state.Sent.Count;
        if (!differs)
        {
            return null;
        }

        state.Sent = held;
        return [.. selected];
    }

    /// <summary>
    /// Whether one of the inbound listeners this client holds differs in <paramref name="snapshot"/> (they are not listed
    /// in <see cref="XdsChanges"/>; see <see cref="InboundListenerSet"/>): a lookup per inbound name it subscribes to.
    /// </summary>
    private bool InboundChanged(string typeUrl, TypeState state, XdsSnapshot snapshot)
    {
        if (typeUrl != TypeUrls.Listener || snapshot.Changes is not { InboundListenersUnknown: true })
        {
            return false;
        }

        foreach (var name in state.Names)
        {
            if (!name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal))
            {
                continue;
            }

            var current = View.Resolve(typeUrl, name, snapshot);
            var held = state.Sent.TryGetValue(name, out var old);
            if (current is null ? held : !held || !Same(old!, current))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether <paramref name="changes"/> may change this client's LDS/CDS set (inbound listeners aside: <see cref="InboundChanged"/>).</summary>
    private static bool Touches(string typeUrl, TypeState state, XdsChanges changes)
    {
        if (changes.Changed(typeUrl).Count == 0 && changes.Removed(typeUrl).Count == 0 && (typeUrl != TypeUrls.Listener || !changes.ListenerTargetsChanged))
        {
            return false;
        }

        // Listener names are resolved per spelling (orders, orders:80, the FQDN…): a target change may touch any of them.
        if (typeUrl == TypeUrls.Listener && changes.ListenerTargetsChanged && (state.Wildcard || state.Names.Count > 0))
        {
            return true;
        }

        if (state.Wildcard && typeUrl != TypeUrls.Listener)
        {
            return true;
        }

        return Any(changes.Changed(typeUrl), state.Names) || Any(changes.Removed(typeUrl), state.Names);
    }

    private static bool Any(System.Collections.Frozen.FrozenSet<string> changed, HashSet<string> subscribed)
    {
        // Iterate the smaller side.
        if (changed.Count <= subscribed.Count)
        {
            return changed.Any(subscribed.Contains);
        }

        return subscribed.Any(changed.Contains);
    }

    private static bool Same(XdsResource held, XdsResource current) => ReferenceEquals(held, current) || held.Version == current.Version;

    /// <summary>Writes <paramref name="response"/>; see <see cref="AdsResponseWriter"/>.</summary>
    private Task WriteAsync(string typeUrl, DiscoveryResponse response, IServerStreamWriter<DiscoveryResponse> responses, CancellationToken cancellationToken) =>
        AdsResponseWriter.WriteAsync(responses, response, typeUrl, Session.Limits, Session.Time, Metrics, Logger, ClientId, Session.Peer, cancellationToken);

    private sealed class TypeState
    {
        public bool Wildcard { get; set; }

        public bool EverNamed { get; set; }

        public HashSet<string> Names { get; set; } = new(StringComparer.Ordinal);

        /// <summary>What the client holds, as sent: compared by instance (snapshots reuse unchanged ones), then version.</summary>
        public Dictionary<string, XdsResource> Sent { get; set; } = new(StringComparer.Ordinal);

        /// <summary>The snapshot <see cref="Sent"/> was last brought up to date with; -1 before the first.</summary>
        public long SnapshotVersion { get; set; } = -1;

        public string? LastNonce { get; set; }

        public string? LastVersion { get; set; }

        public string? AckedVersion { get; set; }
    }

    [LoggerMessage(EventId = 6, EventName = "AdsStaleNonce", Level = LogLevel.Debug, Message = "ADS client {ClientId}: ignoring {TypeUrl} request with stale nonce {Nonce} (latest {LatestNonce})")]
    private static partial void LogStaleNonce(ILogger logger, string clientId, string typeUrl, string nonce, string latestNonce);

    [LoggerMessage(EventId = 8, EventName = "AdsSend", Level = LogLevel.Debug, Message = "ADS client {ClientId}: sending {TypeUrl} version {Version} nonce {Nonce} with {Count} resources")]
    private static partial void LogSend(ILogger logger, string clientId, string typeUrl, string version, string nonce, int count);
}
