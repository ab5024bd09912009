using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Discovery;

/// <summary>Where the current <see cref="MeshSnapshot"/> comes from (the xDS client, or a fixed one in tests).</summary>
internal interface IMeshSnapshotSource
{
    /// <summary>Gets the current snapshot; <see cref="MeshSnapshot.Empty"/> until the first one arrived.</summary>
    MeshSnapshot Current { get; }

    /// <summary>Gets a token that fires when <see cref="Current"/> is replaced.</summary>
    IChangeToken GetChangeToken();

    /// <summary>Gets the on-demand subscriptions of this source; null (or not enabled) when every service is always known.</summary>
    Xds.OnDemandSubscriptions? OnDemand => null;
}
