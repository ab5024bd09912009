using Grpc.Core;
using Mesh.Client.Discovery;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;
using Status = Mesh.Xds.Google.Rpc.Status;

namespace Mesh.Client.Xds;

/// <summary>A NACK the client sent: which type, the version it rejected and why.</summary>
internal sealed record XdsNack(string TypeUrl, string RejectedVersion, string Message, DateTimeOffset At);

/// <summary>
/// State-of-the-world ADS client. Subscribes to every listener and cluster (wildcard), or in <c>OnDemand</c> mode to the
/// listeners of the services the app calls (<see cref="OnDemandSubscriptions"/>) and the clusters their routes name; then
/// to the route configurations and endpoints they reference; validates each response as a whole, ACKs or NACKs it, and
/// publishes a new <see cref="MeshSnapshot"/> built from the accepted state. The last snapshot keeps serving while the
/// control plane is away.
/// </summary>
internal sealed partial class XdsClient : IMeshSnapshotSource, IHostedService, IDisposable
{
    private const int InvalidArgument = 3;
    private static readonly string[] TypeOrder = [XdsTypeUrls.Listener, XdsTypeUrls.Cluster, XdsTypeUrls.RouteConfiguration, XdsTypeUrls.ClusterLoadAssignment];

    private readonly ServiceMeshOptions _options;
    private readonly ControlPlaneChannel _channel;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Func<double> _random;
    private readonly Func<Node> _nodeFactory;
    private readonly Dictionary<string, TypeState> _types;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _firstSnapshot = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private MeshSnapshot _current = MeshSnapshot.Empty;
    private ChangeSignal _signal = new();
    private Task? _loop;
    private Node? _node;
    private int _disposed;
    private volatile bool _connected;
    private volatile string? _lastConnectionError;
    private volatile XdsNack? _lastNack;
    private readonly Authorization.InboundPolicyStore _inbound;
    private CancellationTokenSource? _streamCancellation;
    private readonly OnDemandSubscriptions _onDemand;
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The constructor the container uses; the node's workload name falls back to the host's application name.</summary>
    public XdsClient(
        IOptions<ServiceMeshOptions> options,
        ControlPlaneChannel channel,
        TimeProvider timeProvider,
        ILogger<XdsClient> logger,
        Authorization.InboundPolicyStore inbound,
        IHostEnvironment? environment = null)
        : this(options, channel, timeProvider, logger, environment?.ApplicationName ?? "app", random: null, inbound)
    {
    }

    internal XdsClient(
        IOptions<ServiceMeshOptions> options,
        ControlPlaneChannel channel,
        TimeProvider timeProvider,
        ILogger<XdsClient> logger,
        string applicationName,
        Func<double>? random = null,
        Authorization.InboundPolicyStore? inbound = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options.Value;
        _channel = channel;
        _timeProvider = timeProvider;
        _logger = logger;
        _random = random ?? Random.Shared.NextDouble;
        _inbound = inbound ?? new Authorization.InboundPolicyStore();
        var suffix = Random.Shared.Next().ToString("x8", System.Globalization.CultureInfo.InvariantCulture);
        _nodeFactory = () => XdsNode.Create(_options, applicationName, XdsNode.LocalIp(), suffix);
        _onDemand = new OnDemandSubscriptions(options, new Routing.MeshHostNames(_options.Namespace, _options.ClusterDomain), timeProvider, logger);
        _onDemand.OnChanged(Wake);
        _types = TypeOrder.ToDictionary(t => t, t => new TypeState(t, wildcard: !_onDemand.Enabled && t is XdsTypeUrls.Listener or XdsTypeUrls.Cluster), StringComparer.Ordinal);

        // The control plane knows this stream by the certificate its connection presented and ends it when that one expires:
        // after a renewal the stream is reopened on a connection that presents the new certificate.
        _channel.IdentityRotated += OnIdentityRotated;
    }

    public MeshSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Gets the services subscribed on demand (<see cref="OnDemandSubscriptions.Enabled"/> false in wildcard mode).</summary>
    public OnDemandSubscriptions? OnDemand => _onDemand;

    public Uri ControlPlaneAddress => _channel.Address;

    /// <summary>Gets whether an ADS stream is open and has received at least one response.</summary>
    public bool IsConnected => _connected;

    /// <summary>Gets why the last connection attempt or stream failed, or null after a response arrived.</summary>
    public string? LastConnectionError => _lastConnectionError;

    public XdsNack? LastNack => _lastNack;

    /// <summary>Completes when the first complete snapshot was published.</summary>
    public Task FirstSnapshot => _firstSnapshot.Task;

    /// <summary>Gets the last accepted version of each resource type (empty string before the first ACK).</summary>
    public IReadOnlyDictionary<string, string> AcceptedVersions
    {
        get
        {
            lock (_types)
            {
                return _types.ToDictionary(p => p.Key, p => p.Value.Version, StringComparer.Ordinal);
            }
        }
    }

    public IChangeToken GetChangeToken() => Volatile.Read(ref _signal).Token;

    /// <summary>
    /// Subscribes to this workload's inbound listeners (<c>xds.istio.io/grpc/lds/inbound/ip:port</c>), which carry the
    /// PeerAuthentication mode and authorization policy of each port (kept in the <see cref="Authorization.InboundPolicyStore"/>).
    /// The stream is restarted to send them: a request on a fresh stream cannot race a response's nonce, and the current
    /// snapshot keeps serving meanwhile.
    /// </summary>
    public void SubscribeInbound(IEnumerable<string> authorities)
    {
        ArgumentNullException.ThrowIfNull(authorities);
        if (!_inbound.SetNames(authorities.Select(a => Authorization.InboundPolicyDecoder.NamePrefix + a)))
        {
            return;
        }

        RestartStream();
    }

    private void OnIdentityRotated()
    {
        Log.RestartForRotation(_logger, _channel.Address);
        RestartStream();
    }

    /// <summary>Ends the current ADS stream; the loop reconnects at once (the current snapshot keeps serving meanwhile).</summary>
    private void RestartStream()
    {
        try
        {
            Volatile.Read(ref _streamCancellation)?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The stream ended on its own; the next one starts afresh.
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // The loop outlives StartAsync: it must not carry the host's (or a request's) ExecutionContext.
        using (ExecutionContext.SuppressFlow())
        {
            _loop = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_loop is null)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public void Dispose()
    {
        // Registered both as itself and as a hosted service: the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _channel.IdentityRotated -= OnIdentityRotated;
        _onDemand.Dispose();
        _stopping.Cancel();
        _stopping.Dispose();
        Volatile.Read(ref _signal).Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var attempt = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var receivedResponse = false;
            using var streamCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Volatile.Write(ref _streamCancellation, streamCancellation);
            try
            {
                receivedResponse = await RunStreamAsync(() => receivedResponse = true, streamCancellation.Token).ConfigureAwait(false);
                _lastConnectionError = "the control plane closed the ADS stream";
                Log.StreamClosed(_logger, _channel.Address);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled } && streamCancellation.IsCancellationRequested)
            {
                // SubscribeInbound (new names) or a certificate renewal restarted the stream: reconnect at once.
                attempt = 0;
                continue;
            }
            catch (Exception ex) when (ex is RpcException or IOException or HttpRequestException or InvalidOperationException)
            {
                _lastConnectionError = ex is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : ex.Message;
                Log.StreamFailed(_logger, _channel.Address, _lastConnectionError, ex);
            }
            finally
            {
                _connected = false;
            }

            // A stream that got a response was healthy: the next reconnect starts from the shortest delay.
            attempt = receivedResponse ? 0 : attempt + 1;
            var delay = ReconnectDelay(attempt);
            Log.Reconnecting(_logger, _channel.Address, delay);
            try
            {
                await Task.Delay(delay, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>Exponential backoff with full jitter: uniform in [0, min(max, initial × 2^(attempt-1))].</summary>
    internal TimeSpan ReconnectDelay(int attempt)
    {
        var settings = _options.ControlPlane;
        var ceiling = settings.InitialReconnectDelay.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt - 1, 0, 30));
        ceiling = Math.Min(ceiling, settings.MaxReconnectDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(ceiling * _random());
    }

    private async Task<bool> RunStreamAsync(Action onResponse, CancellationToken cancellationToken)
    {
        // Secure mode: the control plane knows this workload by its SVID, so the stream waits for the first one.
        await _channel.WaitForIdentityAsync(cancellationToken).ConfigureAwait(false);
        var client = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(_channel.Channel);
        using var call = client.StreamAggregatedResources(cancellationToken: cancellationToken);
        var stream = new StreamState(call.RequestStream);
        foreach (var state in _types.Values)
        {
            state.Nonce = string.Empty;
            state.SentNames = null;
            state.AwaitingAnswer = false;
        }

        // Wildcard LDS and CDS first (on demand: the names this client wants); RDS and EDS as the last stream left them
        // (with the last accepted versions).
        if (_onDemand.Enabled)
        {
            ApplyListenerNames(DesiredListenerNames());
        }

        await SendRequestAsync(stream, _types[XdsTypeUrls.Listener], null, cancellationToken).ConfigureAwait(false);
        await SendRequestAsync(stream, _types[XdsTypeUrls.Cluster], null, cancellationToken).ConfigureAwait(false);
        foreach (var type in new[] { XdsTypeUrls.RouteConfiguration, XdsTypeUrls.ClusterLoadAssignment })
        {
            if (_types[type].Subscribed.Count > 0)
            {
                await SendRequestAsync(stream, _types[type], null, cancellationToken).ConfigureAwait(false);
            }
        }

        if (_onDemand.Enabled && !Current.IsSynced)
        {
            // Nothing to wait for (no warm host): the empty snapshot is complete, and first calls subscribe as they come.
            Publish();
        }

        var any = false;
        Task<bool>? next = null;
        while (true)
        {
            next ??= call.ResponseStream.MoveNext(cancellationToken);
            if (_onDemand.Enabled && !next.IsCompleted)
            {
                // A first call to a new host wakes the loop, the one writer of this stream, to subscribe it.
                await Task.WhenAny(next, Volatile.Read(ref _wake).Task).ConfigureAwait(false);
                if (!next.IsCompleted)
                {
                    Interlocked.Exchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                    await SyncListenersAsync(stream, cancellationToken).ConfigureAwait(false);
                    continue;
                }
            }

            var received = await next.ConfigureAwait(false);
            next = null;
            if (!received)
            {
                break;
            }

            if (!any)
            {
                any = true;
                onResponse();
                _connected = true;
                _lastConnectionError = null;
                Log.Connected(_logger, _channel.Address);
            }

            await HandleResponseAsync(stream, call.ResponseStream.Current, cancellationToken).ConfigureAwait(false);
        }

        return any;
    }

    private async Task HandleResponseAsync(StreamState stream, DiscoveryResponse response, CancellationToken cancellationToken)
    {
        if (!_types.TryGetValue(response.TypeUrl, out var state))
        {
            Log.UnknownType(_logger, response.TypeUrl);
            return;
        }

        state.Nonce = response.Nonce;
        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(response.TypeUrl, response.Resources, errors);
        if (decoded is null)
        {
            var message = $"xDS response validation errors: [{string.Join("; ", errors)}]";
            _lastNack = new XdsNack(response.TypeUrl, response.VersionInfo, message, _timeProvider.GetUtcNow());
            Log.Rejected(_logger, XdsTypeUrls.KindOf(response.TypeUrl), response.VersionInfo, state.Version, message);
            await SendRequestAsync(stream, state, new Status { Code = InvalidArgument, Message = message }, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (response.TypeUrl == XdsTypeUrls.Listener)
        {
            // This workload's inbound listeners are its inbound policy, not outbound config: they live in their own store.
            _inbound.Replace(decoded.Values.OfType<Authorization.InboundPolicy>());
            decoded = decoded.Where(p => p.Value is not Authorization.InboundPolicy).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        }

        if (response.TypeUrl == XdsTypeUrls.Listener && _onDemand.Enabled)
        {
            // Our control plane answers every LDS request that adds names with the full subscribed set, so a response to
            // the request that named a host and lacks it means "does not exist". A response is that answer when the last
            // request named the host and either opened the stream (never stale) or acknowledged the very version the
            // response carries: a push of newer config that crossed the request (which the server then ignored as stale)
            // carries another version, and its ACK, which names the host again, gets the real answer. Other servers may
            // never answer for a missing name: the subscription timeout covers them.
            var sentNames = state.SentNames;
            var fromStreamStart = state.SentNonce.Length == 0;
            var sameVersion = state.SentVersion == response.VersionInfo;
            _onDemand.OnListeners(
                decoded.Keys.ToHashSet(StringComparer.Ordinal),
                name => sentNames is not null && sentNames.Contains(name) && (fromStreamStart || sameVersion));
        }

        state.AwaitingAnswer = false;
        List<string>? recheck = null;
        if (response.TypeUrl == XdsTypeUrls.Listener && _onDemand.Enabled)
        {
            // Hosts added (or found absent) meanwhile go out with this response's ACK.
            var desired = DesiredListenerNames();
            if (state.SentNames is { } sent && state.SentNonce.Length > 0 && state.SentVersion != response.VersionInfo)
            {
                // A response of newer config that lacks a pending host may have crossed the request naming it, or answered
                // it: no way to tell. The ACK leaves those hosts out and a second request names them again, which the
                // server must answer with this very version: that answer is the one that counts.
                recheck = [.. sent.Where(n => !decoded.ContainsKey(n) && desired.Contains(n) && _onDemand.IsPending(n))];
                desired.ExceptWith(recheck);
                if (recheck.Count > 0)
                {
                    // The ACK adds no name either: an ACK that adds one is answered, and that answer (lacking the pending
                    // host, named in the second request by then) would make the second request stale and be taken for it.
                    desired.IntersectWith(sent);
                }
            }

            ApplyListenerNames(desired);
        }

        lock (_types)
        {
            if (state.IsWildcard)
            {
                // LDS and CDS: a state-of-the-world response lists every resource; a missing one is deleted.
                state.Resources = decoded;
            }
            else if (state.IsFullSet)
            {
                // LDS and CDS by name: the response lists every subscribed resource that exists.
                state.Resources = decoded.Where(p => state.Subscribed.Contains(p.Key)).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            }
            else
            {
                foreach (var (name, value) in decoded)
                {
                    if (state.Subscribed.Contains(name))
                    {
                        state.Resources[name] = value;
                    }
                }
            }

            state.Version = response.VersionInfo;
            state.Received = true;
        }

        Log.Accepted(_logger, XdsTypeUrls.KindOf(response.TypeUrl), response.VersionInfo, decoded.Count);
        await SendRequestAsync(stream, state, null, cancellationToken).ConfigureAwait(false);
        if (recheck is { Count: > 0 })
        {
            ApplyListenerNames(DesiredListenerNames());
            await SendRequestAsync(stream, state, null, cancellationToken).ConfigureAwait(false);
        }

        if (state.IsWildcard || _onDemand.Enabled)
        {
            await UpdateReferencedAsync(stream, cancellationToken).ConfigureAwait(false);
        }

        Publish();
        _onDemand.CompleteAbsent();
    }

    /// <summary>RDS by the listeners' route configurations, on demand CDS by the clusters the routes name, EDS by the clusters' service names.</summary>
    private async Task UpdateReferencedAsync(StreamState stream, CancellationToken cancellationToken)
    {
        await UpdateSubscriptionAsync(stream, _types[XdsTypeUrls.RouteConfiguration], ReferencedRouteConfigs(), cancellationToken).ConfigureAwait(false);
        if (_onDemand.Enabled)
        {
            await UpdateSubscriptionAsync(stream, _types[XdsTypeUrls.Cluster], ReferencedClusters(), cancellationToken).ConfigureAwait(false);
        }

        await UpdateSubscriptionAsync(stream, _types[XdsTypeUrls.ClusterLoadAssignment], ReferencedEndpoints(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The hosts subscribed on demand and this workload's inbound listeners.</summary>
    private SortedSet<string> DesiredListenerNames()
    {
        var names = _onDemand.ListenerNames();
        if (_inbound.Names is { Count: > 0 } inbound)
        {
            names.UnionWith(inbound);
        }

        return names;
    }

    /// <summary>Sets the LDS names; listeners no longer subscribed are deleted (the control plane will not send them again).</summary>
    private void ApplyListenerNames(SortedSet<string> names)
    {
        var state = _types[XdsTypeUrls.Listener];
        lock (_types)
        {
            state.Subscribed = names;
            foreach (var name in state.Resources.Keys.Where(n => !names.Contains(n)).ToList())
            {
                state.Resources.Remove(name);
            }
        }
    }

    /// <summary>On demand: sends the LDS names that changed since the last request (loop only: it is the stream's one writer).</summary>
    private async Task SyncListenersAsync(StreamState stream, CancellationToken cancellationToken)
    {
        var state = _types[XdsTypeUrls.Listener];
        var names = DesiredListenerNames();
        if (state.Subscribed.SetEquals(names))
        {
            return;
        }

        // One request that adds names in flight at a time: a second one could reach the server after its answer was
        // sent, be ignored there as stale, and make that answer look like "does not exist" for the second one's names.
        // The ACK of the answer carries them instead.
        if (state.AwaitingAnswer && (state.SentNames is null || !names.IsSubsetOf(state.SentNames)))
        {
            return;
        }

        ApplyListenerNames(names);
        await SendRequestAsync(stream, state, null, cancellationToken).ConfigureAwait(false);
        await UpdateReferencedAsync(stream, cancellationToken).ConfigureAwait(false);
        Publish();
    }

    private void Wake() => Volatile.Read(ref _wake).TrySetResult();

    private async Task UpdateSubscriptionAsync(StreamState stream, TypeState state, SortedSet<string> names, CancellationToken cancellationToken)
    {
        if (state.Subscribed.SetEquals(names))
        {
            return;
        }

        lock (_types)
        {
            state.Subscribed = names;

            // RDS/EDS deletion is implicit: a resource no parent references any more is gone.
            foreach (var name in state.Resources.Keys.Where(n => !names.Contains(n)).ToList())
            {
                state.Resources.Remove(name);
            }
        }

        await SendRequestAsync(stream, state, null, cancellationToken).ConfigureAwait(false);
    }

    private SortedSet<string> ReferencedRouteConfigs() =>
        new(_types[XdsTypeUrls.Listener].Resources.Values.OfType<ListenerResource>()
            .Where(l => l.RouteConfigName is not null)
            .Select(l => l.RouteConfigName!), StringComparer.Ordinal);

    private SortedSet<string> ReferencedClusters()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        var configs = _types[XdsTypeUrls.RouteConfiguration].Resources.Values.Cast<RouteConfiguration>()
            .Concat(_types[XdsTypeUrls.Listener].Resources.Values.OfType<ListenerResource>().Select(l => l.InlineRoutes).OfType<RouteConfiguration>());
        foreach (var config in configs)
        {
            foreach (var host in config.VirtualHosts)
            {
                foreach (var route in host.Routes)
                {
                    if (route.Route_ is not { } action)
                    {
                        continue;
                    }

                    if (action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.Cluster)
                    {
                        names.Add(action.Cluster);
                    }
                    else if (action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.WeightedClusters)
                    {
                        names.UnionWith(action.WeightedClusters.Clusters.Select(c => c.Name));
                    }

                    names.UnionWith(action.RequestMirrorPolicies.Select(m => m.Cluster).Where(c => c.Length > 0));
                }
            }
        }

        return names;
    }

    private SortedSet<string> ReferencedEndpoints() =>
        new(_types[XdsTypeUrls.Cluster].Resources.Values.Cast<ClusterResource>()
            .Where(c => c.EdsServiceName is not null)
            .Select(c => c.EdsServiceName!), StringComparer.Ordinal);

    private async Task SendRequestAsync(StreamState stream, TypeState state, Status? error, CancellationToken cancellationToken)
    {
        var request = new DiscoveryRequest
        {
            TypeUrl = state.TypeUrl,
            VersionInfo = state.Version,
            ResponseNonce = state.Nonce,
            ErrorDetail = error,
        };

        if (state.IsWildcard)
        {
            // Wildcard plus this workload's inbound listeners, which a wildcard does not cover.
            if (state.TypeUrl == XdsTypeUrls.Listener && _inbound.Names is { Count: > 0 } inboundNames)
            {
                request.ResourceNames.Add("*");
                request.ResourceNames.Add(inboundNames);
            }
        }
        else
        {
            // An empty list means wildcard only when no names were ever sent; RDS and EDS always send names.
            if (state.Subscribed.Count == 0 && state.SentNames is null)
            {
                return;
            }

            request.ResourceNames.Add(state.Subscribed);
            state.AwaitingAnswer |= state.SentNames is null ? state.Subscribed.Count > 0 : !state.Subscribed.IsSubsetOf(state.SentNames);
            state.SentNames = state.Subscribed;
        }

        state.SentNonce = request.ResponseNonce;
        state.SentVersion = request.VersionInfo;

        if (!stream.SentNode)
        {
            request.Node = _node ??= _nodeFactory();
            stream.SentNode = true;
        }

        await stream.Requests.WriteAsync(request, cancellationToken).ConfigureAwait(false);
    }

    private void Publish()
    {
        MeshSnapshot snapshot;
        var incomplete = new List<string>();
        lock (_types)
        {
            var lds = _types[XdsTypeUrls.Listener];
            var cds = _types[XdsTypeUrls.Cluster];
            var rds = _types[XdsTypeUrls.RouteConfiguration];
            var eds = _types[XdsTypeUrls.ClusterLoadAssignment];
            // On demand, a type with no name to ask for has nothing to wait for.
            if (!(lds.Received || (!lds.IsWildcard && lds.Subscribed.Count == 0)) || !(cds.Received || (!cds.IsWildcard && cds.Subscribed.Count == 0)))
            {
                return;
            }

            var previous = Current;

            // The first snapshot waits for complete config, so that readiness means "everything referenced arrived".
            if (!previous.IsSynced
                && (!rds.Subscribed.All(rds.Resources.ContainsKey) || !eds.Subscribed.All(eds.Resources.ContainsKey)))
            {
                return;
            }

            var version = $"lds={lds.Version} rds={rds.Version} cds={cds.Version} eds={eds.Version}";
            snapshot = MeshSnapshotBuilder.Build(
                version,
                lds.Resources.Where(p => p.Value is ListenerResource).ToDictionary(p => p.Key, p => (ListenerResource)p.Value),
                rds.Resources.ToDictionary(p => p.Key, p => (RouteConfiguration)p.Value),
                cds.Resources.ToDictionary(p => p.Key, p => (ClusterResource)p.Value),
                eds.Resources.ToDictionary(p => p.Key, p => (EndpointsResource)p.Value),
                previous,
                incomplete,
                usage: _onDemand.Enabled ? _onDemand.UsageOf : null);
        }

        foreach (var reason in incomplete)
        {
            Log.Incomplete(_logger, reason);
        }

        Volatile.Write(ref _current, snapshot);
        var old = Interlocked.Exchange(ref _signal, new ChangeSignal());
        old.Fire(); // not disposed: a late RegisterChangeCallback on it must still run at once
        Log.Published(_logger, snapshot.Version, snapshot.Services.Length, snapshot.Clusters.Count);
        _firstSnapshot.TrySetResult();
        if (_onDemand.Enabled)
        {
            _onDemand.OnPublished(snapshot);
        }
    }

    private sealed class TypeState(string typeUrl, bool wildcard)
    {
        public string TypeUrl { get; } = typeUrl;

        public bool IsWildcard { get; } = wildcard;

        /// <summary>Gets whether a response lists every subscribed resource (LDS, CDS), so one it lacks is deleted.</summary>
        public bool IsFullSet { get; } = typeUrl is XdsTypeUrls.Listener or XdsTypeUrls.Cluster;

        /// <summary>Gets or sets the response nonce and version the last request carried.</summary>
        public string SentNonce { get; set; } = string.Empty;

        public string SentVersion { get; set; } = string.Empty;

        /// <summary>Gets or sets whether a request that added names has had no response of this type yet.</summary>
        public bool AwaitingAnswer { get; set; }

        public string Version { get; set; } = string.Empty;

        public string Nonce { get; set; } = string.Empty;

        public bool Received { get; set; }

        public SortedSet<string> Subscribed { get; set; } = new(StringComparer.Ordinal);

        public SortedSet<string>? SentNames { get; set; }

        public Dictionary<string, object> Resources { get; set; } = new(StringComparer.Ordinal);
    }

    private sealed class StreamState(IClientStreamWriter<DiscoveryRequest> requests)
    {
        public IClientStreamWriter<DiscoveryRequest> Requests { get; } = requests;

        public bool SentNode { get; set; }
    }

    private sealed class ChangeSignal : IDisposable
    {
        private readonly CancellationTokenSource _source = new();

        public ChangeSignal()
        {
            Token = new CancellationChangeToken(_source.Token);
        }

        public IChangeToken Token { get; }

        public void Fire() => _source.Cancel();

        public void Dispose() => _source.Dispose();
    }
}
