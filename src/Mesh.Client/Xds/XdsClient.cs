using Grpc.Core;
using Mesh.Client.Discovery;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Retry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;
using Status = Mesh.Xds.Google.Rpc.Status;

namespace Mesh.Client.Xds;

/// <summary>A NACK the client sent: which type, the version it rejected and why.</summary>
internal sealed record XdsNack(string TypeUrl, string RejectedVersion, string Message, DateTimeOffset At);

/// <summary>
/// ADS client, state-of-the-world or delta (<c>Mesh:ControlPlane:Protocol</c>; the wire is a <see cref="XdsStream"/>, the
/// state here is shared by both). Subscribes to every listener and cluster (wildcard), or in <c>OnDemand</c> mode to the
/// listeners of the services the app calls (<see cref="OnDemandSubscriptions"/>) and the clusters their routes name; then
/// to the route configurations and endpoints they reference; validates each response, ACKs or NACKs it, and
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
    private readonly bool _delta;
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
        _delta = string.Equals(_options.ControlPlane.Protocol, ControlPlaneProtocols.Delta, StringComparison.OrdinalIgnoreCase);
        _onDemand = new OnDemandSubscriptions(options, new Routing.MeshHostNames(_options.Namespace, _options.ClusterDomain), timeProvider, logger);
        _onDemand.OnChanged(Wake);
        _types = TypeOrder.ToDictionary(t => t, t => new TypeState(t, wildcard: !_onDemand.Enabled && t is XdsTypeUrls.Listener or XdsTypeUrls.Cluster, delta: _delta), StringComparer.Ordinal);

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
            var address = _channel.Address;
            var moveOn = false;
            using var streamCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Volatile.Write(ref _streamCancellation, streamCancellation);
            try
            {
                receivedResponse = await RunStreamAsync(address, () => receivedResponse = true, streamCancellation.Token).ConfigureAwait(false);
                _lastConnectionError = "the control plane closed the ADS stream";
                Log.StreamClosed(_logger, address);

                // A replica shutting down ends its streams: the next one takes over (the snapshot keeps serving meanwhile).
                moveOn = _channel.Failover(address, _lastConnectionError);
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
                if (_delta && ex is RpcException { StatusCode: StatusCode.Unimplemented })
                {
                    _lastConnectionError += " (the control plane does not serve delta ADS: set Mesh:ControlPlane:Protocol to StateOfTheWorld)";
                }

                Log.StreamFailed(_logger, address, _lastConnectionError, ex);
                moveOn = ControlPlaneChannel.IsUnreachable(ex) && _channel.Failover(address, _lastConnectionError);
            }
            finally
            {
                _connected = false;
            }

            // A stream that got a response was healthy: the next reconnect starts from the shortest delay.
            // Another replica not yet tried since the last success is tried after the shortest delay, not a longer one.
            attempt = receivedResponse ? 0 : moveOn ? attempt : attempt + 1;
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
        return Backoff.Reconnect(settings.InitialReconnectDelay, settings.MaxReconnectDelay, attempt, _random());
    }

    private async Task<bool> RunStreamAsync(Uri address, Action onResponse, CancellationToken cancellationToken)
    {
        // Secure mode: the control plane knows this workload by its SVID, so the stream waits for the first one.
        await _channel.WaitForIdentityAsync(cancellationToken).ConfigureAwait(false);
        var client = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(_channel.ChannelFor(address));
        using XdsStream stream = _delta ? new DeltaStream(this, client, cancellationToken) : new SotwStream(this, client, cancellationToken);
        foreach (var state in _types.Values)
        {
            state.Nonce = string.Empty;
            state.SentNames = null;
            state.AwaitingAnswer = false;
        }

        // Wildcard LDS and CDS first (on demand: the names this client wants); RDS and EDS as the last stream left them
        // (with what the client has: the last accepted versions, or in delta each resource's version).
        if (_onDemand.Enabled)
        {
            ApplyListenerNames(DesiredListenerNames());
        }

        await stream.SendAsync(_types[XdsTypeUrls.Listener], null, cancellationToken).ConfigureAwait(false);
        await stream.SendAsync(_types[XdsTypeUrls.Cluster], null, cancellationToken).ConfigureAwait(false);
        foreach (var type in new[] { XdsTypeUrls.RouteConfiguration, XdsTypeUrls.ClusterLoadAssignment })
        {
            if (_types[type].Subscribed.Count > 0)
            {
                await stream.SendAsync(_types[type], null, cancellationToken).ConfigureAwait(false);
            }
        }

        if (stream.ConnectedOnceSent && stream.Sent > 0)
        {
            // Delta: a reconnect whose resources are all current gets no response at all, so the stream counts as up
            // once its requests went out on an established HTTP/2 connection.
            // Not a response, though: the reconnect backoff still grows for a server that ends such streams unanswered.
            MarkConnected(address, onResponse: null);
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
            next ??= stream.MoveNextAsync(cancellationToken);
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
                MarkConnected(address, onResponse);
            }

            await stream.HandleCurrentAsync(cancellationToken).ConfigureAwait(false);
        }

        return any;
    }

    private void MarkConnected(Uri address, Action? onResponse)
    {
        onResponse?.Invoke();
        _channel.Succeeded(address);
        _lastConnectionError = null;
        if (!_connected)
        {
            _connected = true;
            Log.Connected(_logger, address);
        }
    }

    /// <summary>What both wires do once a response changed the state: follow the names it references, publish, and let the calls waiting for hosts found absent go on.</summary>
    private async Task FollowAndPublishAsync(XdsStream stream, TypeState state, CancellationToken cancellationToken)
    {
        if (state.IsWildcard || _onDemand.Enabled)
        {
            await UpdateReferencedAsync(stream, cancellationToken).ConfigureAwait(false);
        }

        Publish();
        _onDemand.CompleteAbsent();
    }

    /// <summary>A rejected response: remembered for the readiness check and logged; the caller NACKs it.</summary>
    private Status Reject(TypeState state, string version, List<string> errors)
    {
        var message = $"xDS response validation errors: [{string.Join("; ", errors)}]";
        _lastNack = new XdsNack(state.TypeUrl, version, message, _timeProvider.GetUtcNow());
        Log.Rejected(_logger, XdsTypeUrls.KindOf(state.TypeUrl), version, state.Version, message);
        return new Status { Code = InvalidArgument, Message = message };
    }

    /// <summary>RDS by the listeners' route configurations, on demand CDS by the clusters the routes name, EDS by the clusters' service names.</summary>
    private async Task UpdateReferencedAsync(XdsStream stream, CancellationToken cancellationToken)
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
                state.Remove(name);
            }
        }
    }

    /// <summary>On demand: sends the LDS names that changed since the last request (loop only: it is the stream's one writer).</summary>
    private async Task SyncListenersAsync(XdsStream stream, CancellationToken cancellationToken)
    {
        var state = _types[XdsTypeUrls.Listener];
        var names = DesiredListenerNames();
        if (state.Subscribed.SetEquals(names))
        {
            return;
        }

        if (!stream.CanSendListenerNames(state, names))
        {
            return;
        }

        ApplyListenerNames(names);
        await stream.SendAsync(state, null, cancellationToken).ConfigureAwait(false);
        await UpdateReferencedAsync(stream, cancellationToken).ConfigureAwait(false);
        Publish();
    }

    private void Wake() => Volatile.Read(ref _wake).TrySetResult();

    private async Task UpdateSubscriptionAsync(XdsStream stream, TypeState state, SortedSet<string> names, CancellationToken cancellationToken)
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
                state.Remove(name);
            }
        }

        await stream.SendAsync(state, null, cancellationToken).ConfigureAwait(false);
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

    /// <summary>What the client holds of one resource type, whichever wire it came by (the one state both streams share).</summary>
    private sealed class TypeState(string typeUrl, bool wildcard, bool delta)
    {
        public string TypeUrl { get; } = typeUrl;

        /// <summary>Delta only: the version of each resource held (sent back as <c>initial_resource_versions</c> on reconnect).</summary>
        public Dictionary<string, string>? ResourceVersions { get; } = delta ? new(StringComparer.Ordinal) : null;

        public bool IsWildcard { get; } = wildcard;

        /// <summary>Gets whether a response lists every subscribed resource (LDS, CDS), so one it lacks is deleted.</summary>
        public bool IsFullSet { get; } = typeUrl is XdsTypeUrls.Listener or XdsTypeUrls.Cluster;

        /// <summary>Gets or sets the response nonce and version the last request carried (state-of-the-world).</summary>
        public string SentNonce { get; set; } = string.Empty;

        public string SentVersion { get; set; } = string.Empty;

        /// <summary>Gets or sets whether a request that added names has had no response of this type yet (state-of-the-world).</summary>
        public bool AwaitingAnswer { get; set; }

        public string Version { get; set; } = string.Empty;

        /// <summary>Gets or sets the nonce of the last response (delta: until its ACK or NACK is sent).</summary>
        public string Nonce { get; set; } = string.Empty;

        public bool Received { get; set; }

        public SortedSet<string> Subscribed { get; set; } = new(StringComparer.Ordinal);

        public SortedSet<string>? SentNames { get; set; }

        public Dictionary<string, object> Resources { get; set; } = new(StringComparer.Ordinal);

        /// <summary>Drops a resource the client no longer holds (unsubscribed, or removed by the control plane).</summary>
        public void Remove(string name)
        {
            Resources.Remove(name);
            ResourceVersions?.Remove(name);
        }
    }

    /// <summary>
    /// One ADS stream's wire (state-of-the-world or delta): opens the call, turns a <see cref="TypeState"/> into the request
    /// that says what the client wants and answers the last response of its type, and applies responses to the shared state.
    /// Everything else (which names to want, snapshots, on-demand waits, reconnects) is the <see cref="XdsClient"/>'s.
    /// </summary>
    private abstract class XdsStream : IDisposable
    {
        /// <summary>Gets how many requests this stream wrote.</summary>
        public int Sent { get; protected set; }

        /// <summary>Gets whether the stream counts as up once its first requests are written (delta: see <see cref="RunStreamAsync"/>).</summary>
        public abstract bool ConnectedOnceSent { get; }

        public abstract Task<bool> MoveNextAsync(CancellationToken cancellationToken);

        /// <summary>Applies the response <see cref="MoveNextAsync"/> read, then ACKs or NACKs it.</summary>
        public abstract Task HandleCurrentAsync(CancellationToken cancellationToken);

        /// <summary>Sends what the client wants of <paramref name="state"/>'s type, answering its last response (NACK with <paramref name="error"/>).</summary>
        public abstract Task SendAsync(TypeState state, Status? error, CancellationToken cancellationToken);

        /// <summary>Gets whether a request adding LDS names may go out now (on demand).</summary>
        public virtual bool CanSendListenerNames(TypeState state, SortedSet<string> names) => true;

        public abstract void Dispose();
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
