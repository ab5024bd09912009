using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Mesh.Client.Xds;
using Mesh.Xds.Istio.Auth.V1;
using Mesh.Xds.Retry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Security;

/// <summary>
/// Obtains and rotates this workload's X.509-SVID from the control plane's Istio-style CA. A new ECDSA P-256 key is
/// made in process for every request and leaves it only into <c>Mesh:Identity:CredentialFile</c> (opt-in, 0600), from which
/// a restarted workload resumes with its still-valid SVID. The first request authenticates with the bootstrap token,
/// renewals with the current SVID (the token again if the CA refuses the SVID). Renewal runs at half the lifetime ± 5 % jitter; on failure the current certificate
/// stays in use and the request is retried with backoff. The trust bundle is fetched at start, after every renewal and
/// every <see cref="BundleRefreshInterval"/>.
/// </summary>
internal sealed partial class WorkloadIdentityService : IHostedService, IDisposable
{
    public static readonly TimeSpan BundleRefreshInterval = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromMinutes(1);

    private readonly ServiceMeshOptions _options;
    private readonly WorkloadCertificateStore _store;
    private readonly ControlPlaneChannel _channel;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Func<double> _random;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SpiffeId _expectedId;
    private Task? _loop;
    private int _disposed;

    // Set when the CA refused the current SVID as a credential (e.g. its root was replaced): the next request uses the token.
    private bool _certificateRefused;

    public WorkloadIdentityService(
        IOptions<ServiceMeshOptions> options,
        WorkloadCertificateStore store,
        ControlPlaneChannel channel,
        TimeProvider time,
        ILogger<WorkloadIdentityService> logger)
        : this(options, store, channel, time, logger, random: null)
    {
    }

    // Not on the container's constructor: an app's own registered Func<double> must never become the renewal jitter.
    internal WorkloadIdentityService(
        IOptions<ServiceMeshOptions> options,
        WorkloadCertificateStore store,
        ControlPlaneChannel channel,
        TimeProvider time,
        ILogger<WorkloadIdentityService> logger,
        Func<double>? random)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options.Value;
        _store = store;
        _channel = channel;
        _time = time;
        _logger = logger;
        _random = random ?? Random.Shared.NextDouble;
        var account = _options.ServiceAccount ?? _options.Service ?? "default";
        _expectedId = SpiffeId.ForWorkload(_options.Identity.TrustDomain, _options.Namespace, account);
    }

    /// <summary>Gets how many certificates were obtained (tests, diagnostics).</summary>
    public int Issued { get; private set; }

    /// <summary>Gets when the next renewal is due.</summary>
    public DateTimeOffset? NextRenewal { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!_store.IsSecure)
        {
            return Task.CompletedTask;
        }

        using (ExecutionContext.SuppressFlow())
        {
            _loop = Task.WhenAll(
                Task.Run(() => RenewLoopAsync(_stopping.Token), CancellationToken.None),
                Task.Run(() => BundleLoopAsync(_stopping.Token), CancellationToken.None));
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
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _stopping.Dispose();
    }

    /// <summary>
    /// Renewal time: start + (NotAfter − start) × (0.5 ± 0.05), where start is the later of NotBefore and now. NotBefore alone
    /// is backdated by the CA's clock-skew grace (2 min), which made short TTLs (≤ 2 min) renew at once, in a loop.
    /// </summary>
    internal DateTimeOffset RenewalTime(WorkloadCertificate certificate)
    {
        var start = certificate.NotBefore > _time.GetUtcNow() ? certificate.NotBefore : _time.GetUtcNow();
        var lifetime = certificate.NotAfter - start;
        var ratio = 0.5 + ((_random() * 2) - 1) * 0.05;
        return start + lifetime * ratio;
    }

    private async Task RenewLoopAsync(CancellationToken cancellationToken)
    {
        LoadCredentialFile();
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan delay;
            try
            {
                var certificate = await RequestCertificateAsync(cancellationToken).ConfigureAwait(false);
                _store.SetCertificate(certificate);
                Issued++;
                failures = 0;
                var renewAt = RenewalTime(certificate);
                NextRenewal = renewAt;
                Log.Issued(_logger, certificate.Id.Value, certificate.Leaf.SerialNumber, certificate.NotAfter, renewAt);
                await RefreshBundleAsync(cancellationToken).ConfigureAwait(false);
                delay = renewAt - _time.GetUtcNow();
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                failures++;
                if (ex is RpcException { StatusCode: StatusCode.Unauthenticated } && !_certificateRefused && _store.Current is { } refused && refused.NotAfter > _time.GetUtcNow())
                {
                    _certificateRefused = true;
                    Log.CertificateRefused(_logger, refused.Id.Value);
                }

                _store.LastError = ex is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : ex.Message;
                if (_channel.LastTlsError is { } tls)
                {
                    _store.LastError += $" ({tls})";
                }

                delay = RetryDelay(failures);
                Log.IssueFailed(_logger, _channel.Address, _store.LastError, _store.Current is not null, delay, ex);
            }

            try
            {
                await Task.Delay(delay > TimeSpan.Zero ? delay : TimeSpan.Zero, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task BundleLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await RefreshBundleAsync(cancellationToken).ConfigureAwait(false);
                await Task.Delay(BundleRefreshInterval, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Exponential backoff with jitter: 1 s, 2 s, 4 s … up to a minute, each × [0.5, 1).</summary>
    private TimeSpan RetryDelay(int failures) => Backoff.Reconnect(TimeSpan.FromSeconds(1), MaxRetryDelay, failures, _random(), minShare: 0.5);

    internal async Task<WorkloadCertificate> RequestCertificateAsync(CancellationToken cancellationToken)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(_expectedId.Value));
        request.CertificateExtensions.Add(san.Build(critical: true));
        var csr = request.CreateSigningRequestPem();

        var headers = new Metadata();
        var current = _store.Current;
        if (current is null || current.NotAfter <= _time.GetUtcNow() || _certificateRefused)
        {
            // No (valid) SVID to authenticate with: the bootstrap token does.
            headers.Add("authorization", $"Bearer {await ReadTokenAsync(cancellationToken).ConfigureAwait(false)}");
        }

        // An unreachable replica hands the request to the next one; the current certificate keeps serving meanwhile.
        var istioRequest = new IstioCertificateRequest { Csr = csr, ValidityDuration = (long)_options.Identity.CertificateTtl.TotalSeconds };
        var response = await _channel.CallAnyAsync(
            async address =>
            {
                using var channel = _channel.CreateCertificateChannel(address);
                var client = new IstioCertificateService.IstioCertificateServiceClient(channel);
                return await client.CreateCertificateAsync(
                    istioRequest,
                    headers,
                    deadline: _time.GetUtcNow().UtcDateTime.AddSeconds(30),
                    cancellationToken: cancellationToken).ConfigureAwait(false);
            },
            cancellationToken).ConfigureAwait(false);
        var certificate = BuildCertificate(response, key);
        _certificateRefused = false;
        SaveCredentialFile(key, certificate);
        return certificate;
    }

    /// <summary>Resumes with the SVID of <c>Mesh:Identity:CredentialFile</c> when it is still valid for this workload and mesh.</summary>
    private void LoadCredentialFile()
    {
        if (_options.Identity.CredentialFile is not { } path)
        {
            return;
        }

        if (!WorkloadCredentialFile.TryLoad(path, out var leaf, out var intermediates, out var reason))
        {
            Log.CredentialFileUnusable(_logger, path, reason);
            return;
        }

        if (!SvidValidator.TryValidate(leaf, intermediates.Cast<X509Certificate2>(), _store.Bundle, _store.TrustDomain, _time.GetUtcNow(), out var id, out var error))
        {
            leaf!.Dispose();
            Log.CredentialFileUnusable(_logger, path, $"its certificate is not a valid SVID of this mesh now (expired, or from another CA or trust domain): {error}");
            return;
        }

        if (!string.Equals(id!.Value, _expectedId.Value, StringComparison.Ordinal))
        {
            leaf!.Dispose();
            Log.CredentialFileUnusable(_logger, path, $"it holds {id.Value}, not this workload's {_expectedId.Value}");
            return;
        }

        var certificate = new WorkloadCertificate(leaf!, intermediates, id);
        _store.SetCertificate(certificate);
        Log.CredentialFileLoaded(_logger, path, id.Value, certificate.NotAfter);
    }

    private void SaveCredentialFile(ECDsa key, WorkloadCertificate certificate)
    {
        if (_options.Identity.CredentialFile is not { } path)
        {
            return;
        }

        try
        {
            WorkloadCredentialFile.Save(path, key, certificate);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The certificate is still good in memory; only a restart will need the token again.
            Log.CredentialFileWriteFailed(_logger, path, ex.Message, ex);
        }
    }

    private WorkloadCertificate BuildCertificate(IstioCertificateResponse response, ECDsa key)
    {
        if (response.CertChain.Count < 2)
        {
            throw new InvalidDataException($"the CA returned {response.CertChain.Count} certificate(s); a chain has the leaf and at least its root");
        }

        using var publicLeaf = X509Certificate2.CreateFromPem(response.CertChain[0]);

        // The key stays in memory (persisted only to the opt-in Mesh:Identity:CredentialFile).
        var leaf = publicLeaf.CopyWithPrivateKey(key);
        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < response.CertChain.Count - 1; i++)
        {
            intermediates.Add(X509Certificate2.CreateFromPem(response.CertChain[i]));
        }

        var root = X509Certificate2.CreateFromPem(response.CertChain[^1]);
        var roots = new X509Certificate2Collection(_store.Bundle.Roots);
        roots.Add(root);
        if (!SvidValidator.TryValidate(leaf, intermediates.Cast<X509Certificate2>(), new TrustBundle(roots, "the CA response"), _store.TrustDomain, _time.GetUtcNow(), out var id, out var error))
        {
            leaf.Dispose();
            throw new InvalidDataException($"the CA returned a certificate that is not a valid SVID: {error}");
        }

        if (!string.Equals(id!.Value, _expectedId.Value, StringComparison.Ordinal))
        {
            Log.UnexpectedIdentity(_logger, id.Value, _expectedId.Value);
        }

        return new WorkloadCertificate(leaf, intermediates, id);
    }

    private async Task<string> ReadTokenAsync(CancellationToken cancellationToken)
    {
        var identity = _options.Identity;
        if (!string.IsNullOrEmpty(identity.Token))
        {
            return identity.Token;
        }

        // Read at every use: projected tokens are rotated on disk.
        var token = await File.ReadAllTextAsync(identity.TokenFile!, cancellationToken).ConfigureAwait(false);
        return token.Trim();
    }

    internal async Task RefreshBundleAsync(CancellationToken cancellationToken)
    {
        try
        {
            var (pem, source) = await _channel.CallAnyAsync(
                async address =>
                {
                    using var http = _channel.CreateHttpClient(address);
                    var uri = new Uri(address, "/ca/bundle.pem");
                    return (await http.GetStringAsync(uri, cancellationToken).ConfigureAwait(false), uri.ToString());
                },
                cancellationToken).ConfigureAwait(false);
            var bundle = TrustBundle.FromPem(pem, source);
            if (!string.Equals(bundle.Thumbprints, _store.Bundle.Thumbprints, StringComparison.Ordinal))
            {
                _store.SetBundle(bundle);
                Log.BundleUpdated(_logger, bundle.Roots.Count, bundle.Source);
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or InvalidDataException or System.Security.Cryptography.CryptographicException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // The current bundle keeps serving; the next refresh tries again.
            Log.BundleFailed(_logger, _channel.Address, ex.Message, ex);
        }
    }
}
