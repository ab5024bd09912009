using System.Collections.Frozen;
using Mesh.Client.Security;

namespace Mesh.Client.Authorization;

/// <summary>
/// The current inbound policy of each local port, replaced as a whole when the control plane pushes inbound
/// listeners (reads are lock-free; a request sees either the old or the new set, never a mix).
/// </summary>
internal sealed class InboundPolicyStore : IPeerAuthenticationModeSource
{
    private FrozenDictionary<int, InboundPolicy> _policies = FrozenDictionary<int, InboundPolicy>.Empty;

    public IReadOnlyDictionary<int, InboundPolicy> Current => Volatile.Read(ref _policies);

    /// <summary>Replaces every port's policy (state-of-the-world: a port left out has no policy any more).</summary>
    public void Replace(IEnumerable<InboundPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var byPort = new Dictionary<int, InboundPolicy>();
        foreach (var policy in policies)
        {
            byPort[policy.Port] = policy;
        }

        Volatile.Write(ref _policies, byPort.ToFrozenDictionary());
    }

    public bool TryGet(int localPort, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out InboundPolicy? policy) =>
        Volatile.Read(ref _policies).TryGetValue(localPort, out policy);

    /// <summary>The port's mode, or <see cref="PeerAuthenticationMode.Unset"/> when no inbound listener covers it (the caller applies the mesh default).</summary>
    public PeerAuthenticationMode GetMode(int localPort) => TryGet(localPort, out var policy) ? policy.Mode : PeerAuthenticationMode.Unset;
}
