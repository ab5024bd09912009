using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Mesh.Client.Security;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Xds;

/// <summary>
/// The one gRPC channel to the control plane, shared by ADS and workload registration. With an <c>https://</c> address
/// the server must present an SVID of the expected control-plane identity chained to the trust bundle (first contact:
/// <c>Mesh:ControlPlane:RootCertificate</c>), and the client presents its current SVID once it has one.
/// </summary>
internal sealed class ControlPlaneChannel : IDisposable
{
    private readonly Lazy<GrpcChannel> _channel;
    private readonly WorkloadCertificateStore? _certificates;
    private readonly TimeProvider _time;

    public ControlPlaneChannel(IOptions<ServiceMeshOptions> options, WorkloadCertificateStore? certificates = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var value = options.Value;
        Address = value.ControlPlane.Address
            ?? throw new InvalidOperationException("Mesh:ControlPlane:Address is required.");
        _time = time ?? TimeProvider.System;
        IsSecure = Address.Scheme == Uri.UriSchemeHttps;
        ExpectedIdentity = value.ControlPlane.Identity
            ?? ControlPlaneIdentity.In(value.Identity.TrustDomain).SpiffeId;
        if (IsSecure)
        {
            _certificates = certificates ?? throw new InvalidOperationException("An https:// control plane needs the workload certificate store.");
        }

        // An http:// address means h2c (prior knowledge), which GrpcChannel's default handler speaks.
        _channel = new Lazy<GrpcChannel>(() => IsSecure ? CreateRotatingChannel() : GrpcChannel.ForAddress(Address, new GrpcChannelOptions { MaxReceiveMessageSize = MaxResponseBytes }), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public Uri Address { get; }

    public bool IsSecure { get; }

    /// <summary>Gets the SPIFFE ID the control plane's server certificate must carry.</summary>
    public string ExpectedIdentity { get; }

    public GrpcChannel Channel => _channel.Value;

    /// <summary>
    /// Raised after the workload certificate changed and <see cref="Channel"/> switched to connections presenting it;
    /// long-lived streams (ADS) reopen then, because the control plane knows a stream by the certificate of its connection.
    /// </summary>
    public event Action? IdentityRotated;

    /// <summary>Gets why the control plane's certificate was last refused, or null.</summary>
    public string? LastTlsError { get; private set; }

    /// <summary>In secure mode, waits for the first workload certificate: the control plane authenticates ADS and registration by it.</summary>
    public Task WaitForIdentityAsync(CancellationToken cancellationToken) =>
        _certificates is { } store ? store.FirstCertificate.WaitAsync(cancellationToken) : Task.CompletedTask;

    /// <summary>
    /// A new channel on a new connection, for one CA call: the current SVID is presented at its handshake (pooled
    /// connections of <see cref="Channel"/> may predate it).
    /// </summary>
    public GrpcChannel CreateCertificateChannel() => IsSecure ? CreateSecureChannel() : GrpcChannel.ForAddress(Address);

    /// <summary>An HttpClient for plain HTTP calls to the control plane's secure port (the trust bundle).</summary>
    public HttpClient CreateHttpClient() => new(CreateHandler(), disposeHandler: true)
    {
        BaseAddress = Address,
        DefaultRequestVersion = System.Net.HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        Timeout = TimeSpan.FromSeconds(30),
    };

    public void Dispose()
    {
        if (_channel.IsValueCreated)
        {
            _channel.Value.Dispose();
        }
    }

    /// <summary>
    /// The largest ADS response the client takes. gRPC's default (4 MB) is less than one wildcard CDS or EDS response of a
    /// few thousand services (about 2 MB of assignments at 5,000 services × 10 endpoints, clusters with mTLS contexts more),
    /// and a response over the limit ends the stream before it is read, on every reconnect: the client would never sync.
    /// </summary>
    internal const int MaxResponseBytes = 128 * 1024 * 1024;

    private GrpcChannel CreateSecureChannel() =>
        GrpcChannel.ForAddress(Address, new GrpcChannelOptions { HttpHandler = CreateHandler(), DisposeHttpClient = true });

    private GrpcChannel CreateRotatingChannel() =>
        GrpcChannel.ForAddress(Address, new GrpcChannelOptions
        {
            HttpHandler = new RotatingHandler(_certificates!, CreateHandler, () => IdentityRotated?.Invoke()),
            DisposeHttpClient = true,
            MaxReceiveMessageSize = MaxResponseBytes,
        });

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
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,

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
