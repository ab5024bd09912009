using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Security;

/// <summary>Holds the current SVID and bundle; written by <see cref="WorkloadIdentityService"/>, read by TLS code.</summary>
internal sealed partial class WorkloadCertificateStore : IWorkloadCertificateSource, IDisposable
{
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WorkloadCertificate? _current;
    private TrustBundle _bundle;
    private CancellationTokenSource _changed = new();

    /// <summary>
    /// The constructor the container uses: secure mode with an <c>https://</c> control plane, whose bundle starts with the
    /// root of <c>Mesh:ControlPlane:RootCertificate</c>.
    /// </summary>
    public WorkloadCertificateStore(IOptions<ServiceMeshOptions> options, ILogger<WorkloadCertificateStore> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        var value = options.Value;
        IsSecure = value.ControlPlane.IsSecure;
        TrustDomain = value.Identity.TrustDomain;
        _bundle = IsSecure && value.ControlPlane.RootCertificate is { Length: > 0 } rootFile ? ReadRoot(rootFile, logger) : TrustBundle.Empty;
    }

    internal WorkloadCertificateStore(bool isSecure, string trustDomain, TrustBundle initialBundle)
    {
        IsSecure = isSecure;
        TrustDomain = trustDomain;
        _bundle = initialBundle;
    }

    public bool IsSecure { get; }

    public string TrustDomain { get; }

    public WorkloadCertificate? Current => Volatile.Read(ref _current);

    public TrustBundle Bundle => Volatile.Read(ref _bundle);

    /// <summary>Gets why the last certificate request failed, or null after a success.</summary>
    public string? LastError { get; set; }

    /// <summary>Completes when the first certificate was stored.</summary>
    public Task FirstCertificate => _first.Task;

    public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    public void SetCertificate(WorkloadCertificate certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        Volatile.Write(ref _current, certificate);
        LastError = null;
        _first.TrySetResult();
        Fire();
    }

    public void SetBundle(TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        Volatile.Write(ref _bundle, bundle);
        Fire();
    }

    public void Dispose() => Volatile.Read(ref _changed).Dispose();

    private static TrustBundle ReadRoot(string rootFile, ILogger logger)
    {
        try
        {
            return TrustBundle.FromPem(File.ReadAllText(rootFile), rootFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or System.Security.Cryptography.CryptographicException)
        {
            // Readiness reports the missing certificate; the handshake with the control plane names the empty bundle.
            Log.RootUnreadable(logger, rootFile, ex);
            return TrustBundle.Empty;
        }
    }

    private void Fire()
    {
        // Not disposed: a late registration on the old token must still run at once.
        Interlocked.Exchange(ref _changed, new CancellationTokenSource()).Cancel();
    }
}
