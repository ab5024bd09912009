using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Xds;

/// <summary>
/// The gRPC channel to the control plane, shared by ADS and workload registration: one per configured replica
/// (<c>Mesh:ControlPlane:Addresses</c>), of which <see cref="Address"/> is the one in use until a call finds it unreachable
/// (<see cref="Failover"/>). With an <c>https://</c> address the server must present an SVID of the expected control-plane
/// identity chained to the trust bundle (first contact: <c>Mesh:ControlPlane:RootCertificate</c>), and the client presents
/// its current SVID once it has one.
/// </summary>
/// <remarks>
/// One address that names a Kubernetes Service needs no list: each new connection to its ClusterIP goes to a ready pod
/// (kube-proxy), and a headless Service's several A records are tried in turn by the socket connect; a failed stream
/// reconnects on a new connection, so it reaches another replica.
/// </remarks>
internal sealed partial class ControlPlaneChannel : IDisposable
{
    private readonly Lazy<GrpcChannel>[] _channels;
    private readonly WorkloadCertificateStore? _certificates;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private int _current;
    private int _failuresSinceSuccess;

    public ControlPlaneChannel(IOptions<ServiceMeshOptions> options, WorkloadCertificateStore? certificates = null, TimeProvider? time = null, ILogger<ControlPlaneChannel>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var value = options.Value;
        Addresses = value.ControlPlane.EffectiveAddresses is { Count: > 0 } addresses
            ? addresses
            : throw new InvalidOperationException("Mesh:ControlPlane:Address (or Mesh:ControlPlane:Addresses) is required.");
        _time = time ?? TimeProvider.System;
        _logger = logger ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        IsSecure = value.ControlPlane.IsSecure;
        ExpectedIdentity = value.ControlPlane.Identity
            ?? ControlPlaneIdentity.In(value.Identity.TrustDomain).SpiffeId;
        if (IsSecure)
        {
            _certificates = certificates ?? throw new InvalidOperationException("An https:// control plane needs the workload certificate store.");
        }

        // An http:// address means h2c (prior knowledge), which GrpcChannel's default handler speaks.
        _channels = [.. Addresses.Select(address => new Lazy<GrpcChannel>(
            () => IsSecure ? CreateRotatingChannel(address) : GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = MaxResponseBytes }),
            LazyThreadSafetyMode.ExecutionAndPublication))];
    }

    /// <summary>Gets every configured replica, in priority order.</summary>
    public IReadOnlyList<Uri> Addresses { get; }

    /// <summary>Gets the replica in use: calls go here until one finds it unreachable.</summary>
    public Uri Address => Addresses[Volatile.Read(ref _current)];

    public bool IsSecure { get; }

    /// <summary>Gets the SPIFFE ID the control plane's server certificate must carry.</summary>
    public string ExpectedIdentity { get; }

    /// <summary>Gets the channel to the replica in use.</summary>
    public GrpcChannel Channel => _channels[Volatile.Read(ref _current)].Value;

    /// <summary>
    /// Raised after the workload certificate changed and <see cref="Channel"/> switched to connections presenting it;
    /// long-lived streams (ADS) reopen then, because the control plane knows a stream by the certificate of its connection.
    /// </summary>
    public event Action? IdentityRotated;

    /// <summary>Gets why the control plane's certificate was last refused, or null.</summary>
    public string? LastTlsError { get; private set; }

    /// <summary>Gets how many times calls moved to another replica.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    private long _failovers;

    /// <summary>Gets whether a failed call may move on to another replica: UNAVAILABLE, or no connection at all.</summary>
    public static bool IsUnreachable(Exception exception) => exception is
        RpcException { StatusCode: StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown }
        or HttpRequestException or IOException or System.Net.Sockets.SocketException;

    /// <summary>Gets the channel to one replica (registration keeps a lease with each).</summary>
    public GrpcChannel ChannelFor(Uri address) => _channels[IndexOf(address)].Value;

    /// <summary>
    /// Reports that a call to <paramref name="failed"/> found it unreachable: if it is still the replica in use, the next
    /// one takes over (a call that failed on an older one changes nothing). Returns whether a replica not yet tried since
    /// the last success remains, so the caller may try it at once rather than back off.
    /// </summary>
    public bool Failover(Uri failed, string reason)
    {
        ArgumentNullException.ThrowIfNull(failed);
        var index = IndexOf(failed);
        var failures = Interlocked.Increment(ref _failuresSinceSuccess);
        if (Addresses.Count == 1)
        {
            return false;
        }

        var next = (index + 1) % Addresses.Count;
        if (Interlocked.CompareExchange(ref _current, next, index) == index)
        {
            Interlocked.Increment(ref _failovers);
            Log.FailedOver(_logger, failed, Addresses[next], reason);
        }

        return failures < Addresses.Count;
    }

    /// <summary>Reports that a call to <paramref name="address"/> succeeded: every replica may be tried again before backing off.</summary>
    public void Succeeded(Uri address) => Volatile.Write(ref _failuresSinceSuccess, 0);

    /// <summary>In secure mode, waits for the first workload certificate: the control plane authenticates ADS and registration by it.</summary>
    public Task WaitForIdentityAsync(CancellationToken cancellationToken) =>
        _certificates is { } store ? store.FirstCertificate.WaitAsync(cancellationToken) : Task.CompletedTask;

    /// <summary>
    /// Calls the replicas in turn, from the one in use, until one answers: a replica that is unreachable hands the call
    /// (and the replica in use) to the next. The last failure is thrown when none answers.
    /// </summary>
    public async Task<T> CallAnyAsync<T>(Func<Uri, Task<T>> call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        for (var tried = 1; ; tried++)
        {
            var address = Address;
            try
            {
                var result = await call(address).ConfigureAwait(false);
                Succeeded(address);
                return result;
            }
            catch (Exception ex) when (IsUnreachable(ex) && !cancellationToken.IsCancellationRequested && tried < Addresses.Count)
            {
                Failover(address, ex is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : ex.Message);
            }
        }
    }

    /// <summary>
    /// A new channel on a new connection, for one CA call: the current SVID is presented at its handshake (pooled
    /// connections of <see cref="Channel"/> may predate it).
    /// </summary>
    public GrpcChannel CreateCertificateChannel(Uri address) => IsSecure ? CreateSecureChannel(address) : GrpcChannel.ForAddress(address);

    /// <summary>An HttpClient for plain HTTP calls to a replica's secure port (the trust bundle).</summary>
    public HttpClient CreateHttpClient(Uri address) => new(CreateHandler(), disposeHandler: true)
    {
        BaseAddress = address,
        DefaultRequestVersion = System.Net.HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        Timeout = TimeSpan.FromSeconds(30),
    };

    public void Dispose()
    {
        foreach (var channel in _channels.Where(c => c.IsValueCreated))
        {
            channel.Value.Dispose();
        }
    }

    /// <summary>
    /// The largest ADS response the client takes. gRPC's default (4 MB) is less than one wildcard CDS or EDS response of a
    /// few thousand services (about 2 MB of assignments at 5,000 services × 10 endpoints, clusters with mTLS contexts more),
    /// and a response over the limit ends the stream before it is read, on every reconnect: the client would never sync.
    /// </summary>
    internal const int MaxResponseBytes = 128 * 1024 * 1024;

    private GrpcChannel CreateSecureChannel(Uri address) =>
        GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = CreateHandler(), DisposeHttpClient = true });

    private GrpcChannel CreateRotatingChannel(Uri address) =>
        GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = new RotatingHandler(_certificates!, CreateHandler, () => IdentityRotated?.Invoke()),
            DisposeHttpClient = true,
            MaxReceiveMessageSize = MaxResponseBytes,
        });

    private int IndexOf(Uri address)
    {
        for (var i = 0; i < Addresses.Count; i++)
        {
            if (Addresses[i] == address)
            {
                return i;
            }
        }

        throw new ArgumentException($"{address} is not a configured control-plane address.", nameof(address));
    }

    /// <summary>
    /// A handler whose connections present the SVID current when it was made (leaf + intermediates); the long-lived
    /// channel switches to a new one when the certificate rotates, so new connections present the new SVID.
    /// </summary>
    private SocketsHttpHandler CreateHandler()
    {
        var store = _certificates!;
        var expected = ExpectedIdentity;
        return new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            UseProxy = false,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(60),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                CertificateChainPolicy = SvidValidator.HandshakeChainPolicy(),

                // Before the first certificate there is nothing to present: CreateCertificate then authenticates by token.
                ClientCertificateContext = store.Current?.Context,
                AllowTlsResume = false,
                RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                {
                    var result = new PeerValidation();
                    if (MeshTls.Validate(store, _time, certificate, chain, id => string.Equals(id.Value, expected, StringComparison.Ordinal), result))
                    {
                        return true;
                    }

                    LastTlsError = $"the control plane's certificate was refused (expected {expected}): {result.Error}";
                    return false;
                },
            },
        };
    }

    /// <summary>Forwards to a SocketsHttpHandler made for the current SVID; the one before the previous is disposed at a swap.</summary>
    private sealed class RotatingHandler : HttpMessageHandler
    {
        private readonly WorkloadCertificateStore _store;
        private readonly Func<SocketsHttpHandler> _factory;
        private readonly Action _swapped;
        private readonly IDisposable _registration;
        private readonly Lock _lock = new();
        private Entry _current;
        private HttpMessageInvoker? _previous;

        public RotatingHandler(WorkloadCertificateStore store, Func<SocketsHttpHandler> factory, Action swapped)
        {
            _store = store;
            _factory = factory;
            _swapped = swapped;
            _current = new Entry(store.Current, new HttpMessageInvoker(factory(), disposeHandler: true));
            _registration = Microsoft.Extensions.Primitives.ChangeToken.OnChange(store.GetChangeToken, Swap);
        }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Volatile.Read(ref _current).Invoker.SendAsync(request, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _registration.Dispose();
                _current.Invoker.Dispose();
                _previous?.Dispose();
            }

            base.Dispose(disposing);
        }

        private sealed record Entry(WorkloadCertificate? Certificate, HttpMessageInvoker Invoker);

        private void Swap()
        {
            lock (_lock)
            {
                if (ReferenceEquals(_store.Current, _current.Certificate))
                {
                    return; // a bundle change: validation reads the bundle per handshake already
                }

                // Streams on the previous handler keep running until the next rotation (ADS reopens at once on _swapped).
                _previous?.Dispose();
                _previous = _current.Invoker;
                Volatile.Write(ref _current, new Entry(_store.Current, new HttpMessageInvoker(_factory(), disposeHandler: true)));
            }

            _swapped();
        }
    }
}
