using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.ScaleTest;

/// <summary>
/// One simulated ADS client: what it subscribes to and follows (the same for SotW and delta), what it has received on
/// its current stream, and when it was fully synced. The stream itself (<see cref="SotwClient"/>, <see cref="DeltaClient"/>)
/// runs in a subclass; one loop per client reads a response, updates the state, answers and follows references.
/// </summary>
internal abstract class SimulatedClient
{
    private static readonly TimeSpan InitialReconnectDelay = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan MaxReconnectDelay = TimeSpan.FromSeconds(15);

    private readonly ScaleProbe _probe;
    private readonly Random _random;
    private long _bytes;
    private long _responses;
    private int _streams;
    private long _firstOpenedAt;
    private string? _lastError;

    protected SimulatedClient(int index, bool onDemand, IReadOnlyCollection<string> listeners, ScaleProbe probe)
    {
        Index = index;
        OnDemand = onDemand;
        _probe = probe;
        _random = new Random(index);
        foreach (var typeUrl in XdsTypes.All)
        {
            Types[typeUrl] = new TypeState(typeUrl);
        }

        // Wildcard LDS and CDS as Mesh.Client does, or LDS by name (the proxyless gRPC model, which then follows names only).
        Types[XdsTypes.Listener].Wildcard = !onDemand;
        Types[XdsTypes.Cluster].Wildcard = !onDemand;
        if (onDemand)
        {
            Types[XdsTypes.Listener].Subscribed = [.. listeners];
        }

        Node = new Node
        {
            Id = $"sidecar~127.0.0.1~scale-{index}.{MeshConfigGenerator.Namespace}~{MeshConfigGenerator.Namespace}.svc.cluster.local",
            Locality = new Locality(),
            UserAgentName = "mesh-dotnet",
            UserAgentVersion = "scale-test",
            Metadata = new Struct(),
        };
        Node.ClientFeatures.Add("envoy.lb.does_not_support_overprovisioning");
        Node.Metadata.Fields["NAMESPACE"] = Value.ForString(MeshConfigGenerator.Namespace);
        Node.Metadata.Fields["GENERATOR"] = Value.ForString("grpc");
    }

    public int Index { get; }

    public bool OnDemand { get; }

    /// <summary>Bytes of every response received (the protobuf message, without HTTP/2 and gRPC framing).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    public long Responses => Interlocked.Read(ref _responses);

    public int Streams => Volatile.Read(ref _streams);

    /// <summary>When this client opened its first stream (a <see cref="Stopwatch"/> timestamp; 0 before).</summary>
    public long FirstOpenedAt => Interlocked.Read(ref _firstOpenedAt);

    public string? LastError => Volatile.Read(ref _lastError);

    protected Node Node { get; }

    protected Dictionary<string, TypeState> Types { get; } = new(StringComparer.Ordinal);

    /// <summary>Whether this client has <paramref name="name"/> of <paramref name="typeUrl"/> among its subscriptions (safe from another thread).</summary>
    public bool SubscribesTo(string typeUrl, string name)
    {
        var state = Types[typeUrl];
        return state.Wildcard || state.Subscribed.Contains(name);
    }

    /// <summary>Runs streams until <paramref name="cancellationToken"/> fires: reconnects after a failure with a jittered exponential back-off, as Mesh.Client does.</summary>
    public async Task RunAsync(CallInvoker invoker, CancellationToken cancellationToken)
    {
        var attempt = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var opened = Stopwatch.GetTimestamp();
            Interlocked.CompareExchange(ref _firstOpenedAt, opened, 0);
            Interlocked.Increment(ref _streams);
            foreach (var state in Types.Values)
            {
                state.ResetStream();
            }

            var responded = false;
            try
            {
                responded = await RunStreamAsync(invoker, opened, cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _lastError, "the control plane ended the stream");
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented && !cancellationToken.IsCancellationRequested)
            {
                // The control plane does not serve this stream at all (a delta run against a SotW-only server): no retry helps.
                _probe.Fail($"the control plane answered {e.StatusCode} ({e.Status.Detail}) to {MethodName}");
                return;
            }
            catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
            {
                Volatile.Write(ref _lastError, $"{e.StatusCode}: {e.Status.Detail}");
            }
            catch (Exception e) when (e is IOException or HttpRequestException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
            {
                Volatile.Write(ref _lastError, e.Message);
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException && cancellationToken.IsCancellationRequested)
            {
                return;
            }

            attempt = responded ? 1 : attempt + 1;
            var ceiling = Math.Min(MaxReconnectDelay.TotalMilliseconds, InitialReconnectDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 16)));
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(ceiling * _random.NextDouble()), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The ADS method this client calls, for messages.</summary>
    protected abstract string MethodName { get; }

    /// <summary>Runs one stream; true when it received at least one response.</summary>
    protected abstract Task<bool> RunStreamAsync(CallInvoker invoker, long openedAt, CancellationToken cancellationToken);

    /// <summary>Tells the control plane what this client now subscribes to for <paramref name="state"/>'s type.</summary>
    protected abstract Task SubscribeAsync(TypeState state, CancellationToken cancellationToken);

    /// <summary>Counts a response and its size, and lets the change in flight see what arrived.</summary>
    protected void Received(long bytes)
    {
        Interlocked.Add(ref _bytes, bytes);
        Interlocked.Increment(ref _responses);
    }

    /// <summary>Keeps <paramref name="variant"/> for this stream and reports an assignment to the change in flight.</summary>
    protected void Keep(TypeState state, ResourceVariant variant, int anyBytes)
    {
        state.Received[variant.Name] = variant;
        if (state.TypeUrl == XdsTypes.ClusterLoadAssignment)
        {
            _probe.Change?.Observe(Index, variant, anyBytes, Stopwatch.GetTimestamp());
        }
    }

    protected ResourceVariant Intern(string typeUrl, string? name, ByteString bytes) => _probe.Catalog.Intern(typeUrl, name, bytes);

    /// <summary>
    /// After a response of <paramref name="state"/>'s type: follows what it references (LDS → RDS, RDS → CDS when CDS is
    /// by name, CDS → EDS), re-subscribing where that changed, then reports a full sync once everything subscribed is here.
    /// </summary>
    protected async Task FollowAsync(TypeState state, long streamOpenedAt, CancellationToken cancellationToken)
    {
        var dependent = state.TypeUrl switch
        {
            XdsTypes.Listener => XdsTypes.RouteConfiguration,
            XdsTypes.RouteConfiguration when OnDemand => XdsTypes.Cluster,
            XdsTypes.Cluster => XdsTypes.ClusterLoadAssignment,
            _ => null,
        };

        if (dependent is not null)
        {
            var next = Types[dependent];
            var wanted = state.Received.Values.SelectMany(v => v.References).ToHashSet(StringComparer.Ordinal);
            if (!next.Wildcard && !wanted.SetEquals(next.Subscribed))
            {
                // RDS/EDS (and on-demand CDS) deletion is implicit: what nothing references any more is gone.
                foreach (var name in next.Received.Keys.Where(n => !wanted.Contains(n)).ToList())
                {
                    next.Received.Remove(name);
                }

                next.Subscribed = wanted;
                await SubscribeAsync(next, cancellationToken).ConfigureAwait(false);
            }
        }

        if (!Types[XdsTypes.Listener].Synced && IsComplete())
        {
            Types[XdsTypes.Listener].Synced = true;
            _probe.OnStreamSynced(Index, streamOpenedAt, Stopwatch.GetTimestamp());
        }
    }

    private bool IsComplete() => Types.Values.All(t => t.Responded && (t.Wildcard || t.Subscribed.All(t.Received.ContainsKey)));

    /// <summary>One resource type on this client: its subscription (kept across streams) and what this stream received.</summary>
    protected sealed class TypeState(string typeUrl)
    {
        private HashSet<string> _subscribed = new(StringComparer.Ordinal);

        public string TypeUrl { get; } = typeUrl;

        public bool Wildcard { get; set; }

        /// <summary>The names subscribed to; replaced, never changed in place, so another thread may read it.</summary>
        public HashSet<string> Subscribed
        {
            get => Volatile.Read(ref _subscribed);
            set
            {
                Ordered = [.. value.Order(StringComparer.Ordinal)];
                Volatile.Write(ref _subscribed, value);
            }
        }

        /// <summary>The names subscribed to, in order (a SotW request lists them all, with every ACK).</summary>
        public string[] Ordered { get; private set; } = [];

        public Dictionary<string, ResourceVariant> Received { get; } = new(StringComparer.Ordinal);

        /// <summary>Whether a response of this type came on this stream.</summary>
        public bool Responded { get; set; }

        /// <summary>On the listener type: whether this stream already reported its full sync.</summary>
        public bool Synced { get; set; }

        public string Version { get; set; } = string.Empty;

        public string Nonce { get; set; } = string.Empty;

        /// <summary>What this stream last told the control plane (delta sends differences to it).</summary>
        public HashSet<string>? Sent { get; set; }

        public void ResetStream()
        {
            Received.Clear();
            Responded = false;
            Synced = false;
            Nonce = string.Empty;
            Sent = null;
        }
    }
}
