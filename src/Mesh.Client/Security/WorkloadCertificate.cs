using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Security;

/// <summary>This workload's X.509-SVID: the leaf with its private key, the intermediates sent with it, and its SPIFFE ID.</summary>
internal sealed class WorkloadCertificate
{
    public WorkloadCertificate(X509Certificate2 leaf, X509Certificate2Collection intermediates, SpiffeId id)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        ArgumentNullException.ThrowIfNull(intermediates);
        ArgumentNullException.ThrowIfNull(id);
        Leaf = leaf;
        Intermediates = intermediates;
        Id = id;

        // Offline: the chain is what the CA returned; never fetch anything while building it.
        Context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
    }

    public X509Certificate2 Leaf { get; }

    public X509Certificate2Collection Intermediates { get; }

    public SpiffeId Id { get; }

    /// <summary>Gets the context handed to SslStream (leaf + intermediates) on both sides of a handshake.</summary>
    public SslStreamCertificateContext Context { get; }

    public DateTimeOffset NotBefore => Leaf.NotBefore.ToUniversalTime();

    public DateTimeOffset NotAfter => Leaf.NotAfter.ToUniversalTime();
}

/// <summary>The trusted mesh roots, replaced as a whole.</summary>
internal sealed class TrustBundle
{
    public TrustBundle(X509Certificate2Collection roots, string source)
    {
        ArgumentNullException.ThrowIfNull(roots);
        Roots = roots;
        Source = source;
        Thumbprints = string.Join(",", roots.Select(r => r.Thumbprint).Order(StringComparer.Ordinal));
    }

    public static TrustBundle Empty { get; } = new([], "none");

    public X509Certificate2Collection Roots { get; }

    /// <summary>Gets where the bundle came from (the root file, or the control plane's /ca/bundle.pem).</summary>
    public string Source { get; }

    /// <summary>Gets the sorted root thumbprints: equal strings mean equal bundles.</summary>
    public string Thumbprints { get; }

    public static TrustBundle FromPem(string pem, string source)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(pem);
        if (roots.Count == 0)
        {
            throw new InvalidDataException($"{source} holds no PEM certificate");
        }

        return new TrustBundle(roots, source);
    }
}

/// <summary>
/// The current SVID and trust bundle, read by every TLS handshake (so rotation needs no restart and no pool rebuild).
/// Both are swapped atomically; the change token fires on every swap.
/// </summary>
internal interface IWorkloadCertificateSource
{
    /// <summary>Gets whether the mesh runs in secure mode (an https:// control plane and a workload identity).</summary>
    bool IsSecure { get; }

    /// <summary>Gets the trust domain peers must belong to.</summary>
    string TrustDomain { get; }

    /// <summary>Gets the current SVID, or null before the first certificate arrived.</summary>
    WorkloadCertificate? Current { get; }

    TrustBundle Bundle { get; }

    IChangeToken GetChangeToken();
}
