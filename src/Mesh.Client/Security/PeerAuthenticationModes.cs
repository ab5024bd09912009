using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Security;

/// <summary>Parses <c>Mesh:Inbound:Mode</c> and serves it as the mode of every port until the control plane says otherwise.</summary>
internal static class PeerAuthenticationModes
{
    public static bool TryParse(string? value, out PeerAuthenticationMode mode)
    {
        mode = value?.ToUpperInvariant() switch
        {
            "STRICT" => PeerAuthenticationMode.Strict,
            "PERMISSIVE" => PeerAuthenticationMode.Permissive,
            "DISABLE" => PeerAuthenticationMode.Disable,
            _ => PeerAuthenticationMode.Unset,
        };
        return mode != PeerAuthenticationMode.Unset;
    }
}

/// <summary>The local fallback: one configured mode for every port.</summary>
internal sealed class StaticPeerAuthenticationModeSource(PeerAuthenticationMode mode) : IPeerAuthenticationModeSource
{
    public PeerAuthenticationMode GetMode(int localPort) => mode;

    public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
}

/// <summary>The mode the control plane's inbound listener gives a port, else the configured fallback (Mesh:Inbound:Mode).</summary>
internal sealed class InboundPeerAuthenticationModeSource : IPeerAuthenticationModeSource
{
    private readonly Authorization.InboundPolicyStore _store;
    private readonly PeerAuthenticationMode _fallback;

    public InboundPeerAuthenticationModeSource(Authorization.InboundPolicyStore store, IOptions<ServiceMeshOptions> options)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;

        // Any other value fails validation when the host starts, before Kestrel accepts a connection.
        _fallback = PeerAuthenticationModes.TryParse(options.Value.Inbound.Mode, out var mode) ? mode : PeerAuthenticationMode.Permissive;
    }

    public PeerAuthenticationMode GetMode(int localPort) => _store.GetMode(localPort) is var mode and not PeerAuthenticationMode.Unset ? mode : _fallback;

    public IChangeToken GetChangeToken() => _store.GetChangeToken();
}
