using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Security;

/// <summary>Istio PeerAuthentication mTLS mode of an inbound port (security.istio.io/v1).</summary>
internal enum PeerAuthenticationMode
{
    /// <summary>Not set at this scope: inherit; a mesh-wide unset means <see cref="Permissive"/>.</summary>
    Unset,

    /// <summary>Plaintext only: mTLS is off.</summary>
    Disable,

    /// <summary>mTLS and plaintext both accepted on the same port.</summary>
    Permissive,

    /// <summary>mTLS only.</summary>
    Strict,
}

/// <summary>The effective mTLS mode of each local port, from the inbound listener the control plane sends.</summary>
internal interface IPeerAuthenticationModeSource
{
    PeerAuthenticationMode GetMode(int localPort);

    /// <summary>A token that fires when any port's mode may have changed (open connections are then checked again).</summary>
    IChangeToken GetChangeToken();
}
