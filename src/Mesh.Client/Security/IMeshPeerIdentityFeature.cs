using System.Security.Cryptography.X509Certificates;

namespace Mesh.Client.Security;

/// <summary>
/// The authenticated peer of an inbound mesh connection (an <c>HttpContext.Features</c> feature). Absent or with a null
/// <see cref="SpiffeId"/> when the peer came in over plaintext (PERMISSIVE or DISABLE).
/// </summary>
public interface IMeshPeerIdentityFeature
{
    /// <summary>Gets the peer's SPIFFE ID, e.g. <c>spiffe://cluster.local/ns/default/sa/frontend</c>.</summary>
    string? SpiffeId { get; }

    /// <summary>Gets the namespace part of the SPIFFE ID.</summary>
    string? PeerNamespace { get; }

    /// <summary>Gets the service account part of the SPIFFE ID.</summary>
    string? PeerServiceAccount { get; }

    /// <summary>Gets the peer's validated X.509-SVID.</summary>
    X509Certificate2? Certificate { get; }
}
