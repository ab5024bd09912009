namespace Mesh.Client.Security;

/// <summary>Claim types of the <c>mesh-mtls</c> identity added to <c>HttpContext.User</c> for mTLS peers.</summary>
public static class MeshClaimTypes
{
    /// <summary>The authentication type of the identity built from the peer's X.509-SVID.</summary>
    public const string AuthenticationType = "mesh-mtls";

    /// <summary>The peer's SPIFFE ID, e.g. <c>spiffe://cluster.local/ns/default/sa/frontend</c>.</summary>
    public const string SpiffeId = "spiffe_id";

    /// <summary>The peer's namespace.</summary>
    public const string Namespace = "namespace";

    /// <summary>The peer's service account.</summary>
    public const string ServiceAccount = "service_account";
}
